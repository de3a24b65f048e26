import type { Logger } from '../logger.ts'
import type { OrbanAgentState, OrbanAgentStop } from './orbanAgentTypes.ts'
import type { OrbanLink } from './orbanLink.ts'
import { ORBAN_PATH, ORBAN_SUBPROTOCOL, OrbanMessageError, parseOrbanMessage, type OrbanMessage } from './orbanMessages.ts'
import type { OrbanAgentEmitter } from './orbanAgentEvents.ts'
import { fromProtobuf } from './orbanProtobuf.ts'

/** The agent endpoint for a platform URL. */
export function orbanEndpoint(url: string): string {
  const endpoint = new URL(url)
  if (endpoint.protocol === 'http:') endpoint.protocol = 'ws:'
  else if (endpoint.protocol === 'https:') endpoint.protocol = 'wss:'
  if (endpoint.pathname === '/' || endpoint.pathname === '') endpoint.pathname = ORBAN_PATH
  return endpoint.toString()
}

/** One open connection, as the message handlers see it. */
export type OrbanConnection = {
  readonly ws: WebSocket
  /** Closes the socket (a no-op when it is already closing). */
  close(code: number, reason: string): void
  /** REGISTER_ACK: ends the handshake timeout, and this connection counts as registered (the backoff starts over). */
  registered(): void
  /** Runs `tick` every `ms` until this connection closes. */
  every(ms: number, tick: () => void): void
  /** Ends the agent, with no reconnect, once this connection closes. */
  stopWith(stop: OrbanAgentStop): void
  /** Whether `stopWith` was called. */
  readonly stopping: boolean
}

/** How a connection ended: whether it got registered, and whether the agent must stop. */
export type OrbanConnectOutcome = { registered: boolean; stop?: OrbanAgentStop }

export type OrbanConnectorInit = {
  /** From `orbanEndpoint`. */
  endpoint: string
  WebSocket: typeof WebSocket
  /** From opening the socket to REGISTER_ACK. */
  handshakeTimeoutMs: number
}

export type OrbanConnectorComponents = {
  link: OrbanLink
  events: OrbanAgentEmitter
  log: Logger
  /** Closes the open socket when aborted. */
  stopSignal: AbortSignal
  state: () => OrbanAgentState
  setState: (next: OrbanAgentState) => void
  /** Handles each parsed frame; a rejection is logged. */
  dispatch: (message: OrbanMessage, connection: OrbanConnection) => Promise<void>
}

/** Opens one connection at a time and settles when it closes. */
export function createOrbanConnector(init: OrbanConnectorInit, components: OrbanConnectorComponents): () => Promise<OrbanConnectOutcome> {
  const { endpoint, handshakeTimeoutMs } = init
  const { link, events, log, stopSignal, setState, dispatch } = components
  return function connectOnce(): Promise<OrbanConnectOutcome> {
    return new Promise<OrbanConnectOutcome>((resolve) => {
      let registered = false
      let stop: OrbanAgentStop | undefined
      let heartbeatTimer: ReturnType<typeof setInterval> | undefined
      let closed = false
      setState('connecting')
      let ws: WebSocket
      try {
        ws = new init.WebSocket(endpoint, ORBAN_SUBPROTOCOL)
      } catch (e) {
        log.warn({ endpoint, err: e }, 'orban agent: cannot open a WebSocket')
        resolve({ registered })
        return
      }
      link.attach(ws)
      ws.binaryType = 'arraybuffer'
      const close = (code: number, reason: string) => {
        try {
          ws.close(code, reason)
        } catch {
          // Already closing.
        }
      }
      const handshakeTimer = setTimeout(() => {
        log.warn({ endpoint, state: components.state() }, 'orban agent: handshake timed out')
        close(4000, 'handshake timeout')
      }, handshakeTimeoutMs)
      const onAbort = () => close(1000, 'agent stopping')
      stopSignal.addEventListener('abort', onAbort, { once: true })
      const connection: OrbanConnection = {
        ws,
        close,
        registered() {
          clearTimeout(handshakeTimer)
          registered = true
        },
        every(ms, tick) {
          // A timer started after the socket closed (the first heartbeat was still being sent) would
          // never be cleared and would tick on into later connections.
          if (closed) return
          clearInterval(heartbeatTimer)
          heartbeatTimer = setInterval(tick, ms)
        },
        stopWith(reason) {
          stop = reason
        },
        get stopping() {
          return stop !== undefined
        },
      }

      ws.onopen = () => {
        if (ws.protocol !== ORBAN_SUBPROTOCOL) {
          log.warn({ protocol: ws.protocol }, 'orban agent: platform did not accept the subprotocol')
          close(4002, 'subprotocol')
          return
        }
        setState('authenticating')
      }
      ws.onerror = () => log.debug({ endpoint }, 'orban agent: socket error')
      ws.onclose = (event) => {
        closed = true
        clearTimeout(handshakeTimer)
        clearInterval(heartbeatTimer)
        stopSignal.removeEventListener('abort', onAbort)
        link.detach(ws)
        log.info({ code: event.code, reason: event.reason, registered }, 'orban agent: disconnected')
        resolve({ registered, stop })
      }
      ws.onmessage = (event: MessageEvent) => {
        let message: OrbanMessage
        try {
          message = typeof event.data === 'string' ? parseOrbanMessage(event.data) : fromProtobuf(new Uint8Array(event.data as ArrayBuffer))
        } catch (e) {
          log.warn({ err: e instanceof OrbanMessageError ? e.message : e }, 'orban agent: unreadable frame from the platform ignored')
          return
        }
        events.emit('message', message)
        void dispatch(message, connection).catch((e: unknown) => log.error({ type: message.type, err: e }, 'orban agent: handling a message failed'))
      }
    })
  }
}
