import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { circuitRelayTransport } from '@libp2p/circuit-relay-v2'
import { identify } from '@libp2p/identify'
import { ping } from '@libp2p/ping'
import { webRTC } from '@libp2p/webrtc'
import { webSockets } from '@libp2p/websockets'
import { multiaddr } from '@multiformats/multiaddr'
import type { PrivateKey } from '@libp2p/interface'
import { createLibp2p } from 'libp2p'

export type BrowserLibp2pInit = {
  /** The page's identity (see loadOrCreateBrowserIdentity); a fresh one when absent. */
  privateKey?: PrivateKey
  /**
   * Allow dialing private and loopback addresses (`ws://127.0.0.1`): dev and tests only; the
   * default gater refuses them in browsers. @default true
   */
  allowPrivateDials?: boolean
}

/**
 * A page's libp2p, on the main thread (WebRTC exists only in windows): WebSockets to relays and
 * Node hosts, circuit relay v2 (client) so others can reach this page through a relay, and WebRTC
 * to other pages (signalled over a relayed circuit). It listens on `/p2p-circuit` and `/webrtc`,
 * which become addresses once a relay is connected (see `connectRelay`).
 */
export async function createBrowserLibp2p(init: BrowserLibp2pInit = {}) {
  return createLibp2p({
    ...(init.privateKey ? { privateKey: init.privateKey } : {}),
    addresses: { listen: ['/p2p-circuit', '/webrtc'] },
    transports: [webSockets(), webRTC(), circuitRelayTransport()],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    ...(init.allowPrivateDials === false ? {} : { connectionGater: { denyDialMultiaddr: async () => false } }),
    services: { identify: identify(), ping: ping() },
  })
}

export type BrowserLibp2p = Awaited<ReturnType<typeof createBrowserLibp2p>>

/**
 * Dials a relay (a Node host's `/ws` address) and waits until this page has a reservation on it:
 * a `/p2p-circuit` address, and a `/webrtc` one built on it.
 */
export async function connectRelay(node: BrowserLibp2p, relayAddr: string, timeoutMs = 20_000): Promise<string[]> {
  await node.dial(multiaddr(relayAddr), { signal: AbortSignal.timeout(timeoutMs) })
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const addrs = node.getMultiaddrs().map(String)
    if (addrs.some((a) => a.includes('/p2p-circuit') && !a.includes('/webrtc')) && addrs.some((a) => a.includes('/webrtc'))) return addrs
    if (Date.now() > deadline) throw new Error(`no relay reservation within ${timeoutMs} ms (addresses: ${addrs.join(', ') || 'none'})`)
    await new Promise((r) => setTimeout(r, 100))
  }
}
