import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { circuitRelayServer, circuitRelayTransport } from '@libp2p/circuit-relay-v2'
import { identify } from '@libp2p/identify'
import type { PrivateKey } from '@libp2p/interface'
import { ping } from '@libp2p/ping'
import { tcp } from '@libp2p/tcp'
import { webSockets } from '@libp2p/websockets'
import { createLibp2p } from 'libp2p'

export type NodeLibp2pInit = {
  privateKey: PrivateKey
  /** @default ['/ip4/127.0.0.1/tcp/0', '/ip4/127.0.0.1/tcp/0/ws'] */
  listen?: string[]
  /** Run a circuit-relay-v2 server so pages can reach each other through this host. @default true */
  relay?: boolean
}

/** A node host's libp2p: TCP and WebSockets, Noise, Yamux, identify, ping, and a relay server. */
export async function createNodeLibp2p(init: NodeLibp2pInit) {
  return createLibp2p({
    privateKey: init.privateKey,
    addresses: { listen: init.listen ?? ['/ip4/127.0.0.1/tcp/0', '/ip4/127.0.0.1/tcp/0/ws'] },
    // The relay transport lets a host dial pages that are reachable only through a relay.
    transports: [tcp(), webSockets(), circuitRelayTransport()],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    // Hosts on one machine or a LAN dial each other on private addresses.
    connectionGater: { denyDialMultiaddr: async () => false },
    services: {
      identify: identify(),
      ping: ping(),
      ...(init.relay === false ? {} : { relay: circuitRelayServer() }),
    },
  })
}

export type NodeLibp2p = Awaited<ReturnType<typeof createNodeLibp2p>>
