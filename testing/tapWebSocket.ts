/**
 * The global WebSocket with every text frame it sends and receives recorded: a real socket, for
 * checking the bytes a component puts on the wire (not a stand-in for one).
 */
export function tapWebSocket(): { WebSocket: typeof WebSocket; sent: string[]; received: string[] } {
  const sent: string[] = []
  const received: string[] = []
  class TappedWebSocket extends WebSocket {
    constructor(url: string | URL, protocols?: string | string[]) {
      super(url, protocols)
      this.addEventListener('message', (e: MessageEvent) => {
        if (typeof e.data === 'string') received.push(e.data)
      })
    }
    override send(data: string | ArrayBufferLike | Blob | ArrayBufferView): void {
      if (typeof data === 'string') sent.push(data)
      super.send(data)
    }
  }
  return { WebSocket: TappedWebSocket, sent, received }
}
