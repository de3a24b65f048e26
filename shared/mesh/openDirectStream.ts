import { LimitedConnectionError, type PeerId, type Stream } from '@libp2p/interface'
import type { Multiaddr } from '@multiformats/multiaddr'
import type { Logger } from '../logger.ts'
import type { DialPlan } from './peerAddress.ts'

/**
 * Longest wait for a direct (WebRTC) connection once a peer was reached only over a relay; the
 * caller's signal bounds it too. One WebRTC dial between two Node peers on a loaded 2-core CI
 * machine once took over 5 s. @default 15000
 */
export const DIRECT_WAIT_MS = 15_000

/**
 * Longest one dial attempt may take before it is abandoned and made again. WebRTC's ICE now and
 * then stalls (no candidate pair ever succeeds; seen between two Chromium pages on a loaded
 * machine) while a fresh attempt connects in about a second; a dial that fails outright is not
 * repeated. @default 8000
 */
export const DIAL_ATTEMPT_MS = 8000

/** A connection as far as this file looks at it: libp2p sets `limits` on relayed (circuit v2) connections. */
export type DirectConnection = {
  limits?: object
  newStream(protocol: string, opts?: { signal?: AbortSignal }): Promise<Stream>
}

/** What opening a direct stream needs of a libp2p node (browser and Node nodes both fit). */
export type DirectStreamNode = {
  dial(peer: Multiaddr[] | PeerId, opts?: { signal?: AbortSignal }): Promise<DirectConnection>
  dialProtocol(peer: Multiaddr[] | PeerId, protocol: string, opts?: { signal?: AbortSignal }): Promise<Stream>
  getConnections(peerId?: PeerId): DirectConnection[]
}

/** A peer reached only over a limited relay circuit, with no direct connection in time. */
export class NoDirectConnectionError extends Error {
  readonly peerId: string

  constructor(peerId: string, message: string, options?: { cause?: unknown }) {
    super(message, options)
    this.peerId = peerId
    this.name = 'NoDirectConnectionError'
  }
}

const isWebRTC = (ma: Multiaddr) => ma.getComponents().some((c) => c.name === 'webrtc')
const unlimited = (node: DirectStreamNode, peerId: PeerId) => node.getConnections(peerId).find((c) => c.limits == null)

/**
 * A stream for `protocol` to a planned peer that never runs over a limited relay circuit (hidden
 * states must not go through relays, and libp2p refuses such streams anyway). When libp2p hands
 * back a limited connection (it joined a dial of the peer's circuit address, e.g. the WebRTC
 * transport's own signalling dial, or the peer's WebRTC dial failed and it fell back to the
 * circuit), the peer's `/webrtc` addresses are dialled and the direct connection awaited for at
 * most `directWaitMs`; the stream is then opened on it, once.
 */
export async function openDirectStream(
  node: DirectStreamNode,
  plan: DialPlan,
  protocol: string,
  opts: { signal: AbortSignal; logger: Logger; directWaitMs?: number; attemptMs?: number },
): Promise<Stream> {
  const peer = plan.peerId.toString()
  const attemptMs = opts.attemptMs ?? DIAL_ATTEMPT_MS
  for (let attempt = 1; ; attempt++) {
    const stalled = AbortSignal.timeout(attemptMs)
    try {
      return await node.dialProtocol(plan.hints.length ? plan.hints : plan.peerId, protocol, { signal: AbortSignal.any([opts.signal, stalled]) })
    } catch (e) {
      if (e instanceof LimitedConnectionError) break
      if (opts.signal.aborted || !stalled.aborted) throw e
      opts.logger.warn({ peer, attempt, attemptMs }, 'a dial stalled; dialling again')
    }
  }
  const webrtc = plan.hints.filter(isWebRTC)
  if (webrtc.length === 0) {
    opts.logger.warn({ peer }, 'peer reached only over a limited relay circuit and no /webrtc address known')
    throw new NoDirectConnectionError(peer, 'only a limited relay connection and no /webrtc address to dial')
  }
  const waitMs = opts.directWaitMs ?? DIRECT_WAIT_MS
  const deadline = AbortSignal.any([opts.signal, AbortSignal.timeout(waitMs)])
  opts.logger.info({ peer, webrtc: webrtc.map(String) }, 'peer reached only over a limited relay circuit; dialling its /webrtc address')
  let lastError: unknown
  // A dial may join one already under way for the peer and so return the limited connection
  // again: dialled again until the deadline, a direct connection from anyone's dial being taken.
  // An attempt that stalls (ICE) is abandoned after attemptMs, as above.
  for (let attempt = 1; !deadline.aborted; attempt++) {
    const ready = unlimited(node, plan.peerId)
    if (ready) return ready.newStream(protocol, { signal: opts.signal })
    const stalled = AbortSignal.timeout(attemptMs)
    try {
      const conn = await node.dial(webrtc, { signal: AbortSignal.any([deadline, stalled]) })
      if (conn.limits == null) return await conn.newStream(protocol, { signal: opts.signal })
    } catch (e) {
      lastError = e
      if (deadline.aborted) break
      if (stalled.aborted) opts.logger.warn({ peer, attempt, attemptMs }, 'a WebRTC dial stalled; dialling again')
    }
    await new Promise((r) => setTimeout(r, 100))
  }
  const reason = lastError instanceof Error ? `: ${lastError.message}` : ''
  opts.logger.warn({ peer, waitMs, err: reason }, 'no direct connection to a peer reached only over a limited relay circuit')
  throw new NoDirectConnectionError(peer, `only a limited relay connection; no direct WebRTC connection within ${waitMs} ms${reason}`, { cause: lastError })
}
