import { encodeOrbanMessage, type OrbanMessageType, type OrbanPayloadInput } from './orbanMessages.ts'

/**
 * The agent's side of the current connection: which socket is open, whether its session is
 * registered, and the rule that an unregistered socket carries only the handshake. Results that must
 * reach the platform even across a disconnect wait in an outbox for the next session.
 */
export type OrbanLink = {
  /** The socket of the current connection, if one is open. */
  readonly socket: WebSocket | undefined
  /** True from REGISTER_ACK until the connection closes. */
  readonly ready: boolean
  /** A new connection's socket (not registered yet). */
  attach(ws: WebSocket): void
  /** REGISTER_ACK: the session may carry everything. */
  markReady(): void
  /** The connection closed: nothing more goes out on `ws`. */
  detach(ws: WebSocket): void
  /** Sends on a given socket (the handshake, before the session is ready). */
  sendOn<K extends OrbanMessageType>(ws: WebSocket, type: K, payload: OrbanPayloadInput<K>): boolean
  /** Sends on the registered session; false (dropped) when there is none: an unauthenticated socket must see nothing else. */
  send<K extends OrbanMessageType>(type: K, payload: OrbanPayloadInput<K>): boolean
  /** Sends when ready, else keeps it for the next session. */
  sendOrKeep<K extends OrbanMessageType>(type: K, payload: OrbanPayloadInput<K>): void
  /** An encoded frame: sent when ready, else kept for the next session. */
  sendTextOrKeep(text: string): void
  /** An encoded frame, sent only when ready (dropped otherwise). */
  sendTextIfReady(text: string): void
  /** Sends what the outbox kept on a newly registered socket. */
  flush(ws: WebSocket): void
}

export function createOrbanLink(): OrbanLink {
  let socket: WebSocket | undefined
  let ready = false
  const outbox: string[] = []

  function sendOn<K extends OrbanMessageType>(ws: WebSocket, type: K, payload: OrbanPayloadInput<K>): boolean {
    const text = encodeOrbanMessage(type, payload)
    if (ws.readyState !== 1) return false
    ws.send(text)
    return true
  }

  function sendTextOrKeep(text: string) {
    if (ready && socket?.readyState === 1) socket.send(text)
    else outbox.push(text)
  }

  return {
    get socket() {
      return socket
    },
    get ready() {
      return ready
    },
    attach(ws) {
      socket = ws
    },
    markReady() {
      ready = true
    },
    detach(ws) {
      ready = false
      if (socket === ws) socket = undefined
    },
    sendOn,
    send(type, payload) {
      if (!ready || !socket) return false
      return sendOn(socket, type, payload)
    },
    sendOrKeep(type, payload) {
      sendTextOrKeep(encodeOrbanMessage(type, payload))
    },
    sendTextOrKeep,
    sendTextIfReady(text) {
      if (ready && socket?.readyState === 1) socket.send(text)
    },
    flush(ws) {
      for (const text of outbox.splice(0)) ws.send(text)
    },
  }
}
