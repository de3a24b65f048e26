import { multiaddr } from '@multiformats/multiaddr'
import type { PrivateKey } from '@libp2p/interface'
import { createMeshPeer, type MeshPeer } from '../../shared/mesh/createMeshPeer.ts'
import type { ForwardService } from '../../shared/mesh/forwardService.ts'
import type { PeerTable } from '../../shared/mesh/peerTable.ts'
import type { LayerRange } from '../../shared/model/shardGraph.ts'
import { connectRelay, createBrowserLibp2p, type BrowserLibp2p } from './createBrowserLibp2p.ts'
import { loadOrCreateBrowserIdentity } from '../identity/indexedDbIdentity.ts'
import { RelayUnreachableError } from './relayUnreachableError.ts'
import { parseModelConfig } from '../../shared/model/modelSpec.ts'
import { createServingVerification } from '../../shared/verify/servingVerification.ts'

export type PageMeshInit = {
  model: string
  /** Folder URL of the model's files. */
  modelUrl: string
  /** Relays' `/ws` multiaddrs: the first that answers gives the page a circuit address; all are dialled. */
  relays: string[]
  /** Peers to ask on each refresh of the peer table (the Oracle's topology). */
  discover: () => Promise<string[]>
}

/**
 * The page's one mesh peer for a model: libp2p on the main thread (its identity from IndexedDB),
 * the forward service (serving a shard once the contributor sets one, and originating chats), the
 * info protocol, and a peer table fed by the relays and the Oracle's topology.
 */
export type PageMesh = {
  node: BrowserLibp2p
  service: ForwardService
  table: PeerTable
  privateKey: PrivateKey
  peerId: string
  model: string
  modelUrl: string
  numLayers: number
  hiddenSize: number
  /** Addresses others reach this page at (relay circuits and WebRTC). */
  multiaddrs(): string[]
  /** The range this page serves, shown to peers over the info protocol. */
  setRange(range: LayerRange | undefined): void
  range(): LayerRange | undefined
  /** Runs a generation with this page as the origin, through the peers its table knows (the mesh peer's origin runner). */
  generate: MeshPeer['generate']
  /** Dials relays and hosts not connected yet (new hosts appear in the topology). */
  dialMore(addrs: string[]): Promise<void>
  stop(): Promise<void>
}

export { RelayUnreachableError }

export async function startPageMesh(init: PageMeshInit): Promise<PageMesh> {
  const configUrl = new URL('config.json', new URL(init.modelUrl, location.href))
  const configRes = await fetch(configUrl).catch((e: Error) => {
    throw new Error(`the model's files at ${configUrl.origin} are unreachable (${e.message}): is the Oracle up?`)
  })
  if (!configRes.ok) throw new Error(`the model's config.json could not be read (HTTP ${configRes.status} from ${init.modelUrl})`)
  const spec = parseModelConfig(await configRes.json())
  const privateKey = await loadOrCreateBrowserIdentity()
  const node = await createBrowserLibp2p({ privateKey })
  let relayed: string[] = []
  let lastError = 'no relay configured'
  for (const relay of init.relays) {
    try {
      relayed = await connectRelay(node, relay)
      break
    } catch (e) {
      lastError = (e as Error).message
    }
  }
  if (!relayed.length) {
    await node.stop()
    throw new RelayUnreachableError(init.relays, lastError)
  }
  const dialMore = async (addrs: string[]) => {
    const connected = new Set(node.getConnections().map((c) => c.remotePeer.toString()))
    await Promise.all(
      addrs.map(async (a) => {
        const peer = multiaddr(a).getComponents().findLast((c) => c.name === 'p2p')?.value
        if (peer && (connected.has(peer) || peer === node.peerId.toString())) return
        // Direct WebSockets to hosts: tensors from them reach this page without a relay circuit.
        await node.dial(multiaddr(a), { signal: AbortSignal.timeout(10_000) }).catch(() => undefined)
      }),
    )
  }
  await dialMore(init.relays)
  let range: LayerRange | undefined
  const peerId = node.peerId.toString()
  const multiaddrs = () => (node.getMultiaddrs().length ? node.getMultiaddrs().map(String) : relayed)
  // Commitments on every served step, audits and recomputations: what lets a page's work be checked and paid.
  let meshRef: Awaited<ReturnType<typeof createMeshPeer>> | undefined
  const verification = createServingVerification({ node, signer: { peerId, sign: (d) => privateKey.sign(d) }, model: init.model, hiddenSize: spec.hiddenSize, shard: () => meshRef?.service.shard() })
  const mesh = await createMeshPeer({
    node,
    stepLog: verification.stepLog,
    model: init.model,
    numLayers: spec.numLayers,
    hiddenSize: spec.hiddenSize,
    stepTimeoutMs: 20_000,
    range: () => range,
    multiaddrs,
    bootstrap: init.relays,
    discover: init.discover,
    refreshMs: 15_000,
  })
  meshRef = mesh
  await verification.start()
  const { service, table } = mesh
  return {
    node,
    service,
    table,
    privateKey,
    peerId,
    model: init.model,
    modelUrl: init.modelUrl,
    numLayers: spec.numLayers,
    hiddenSize: spec.hiddenSize,
    multiaddrs,
    setRange: (r) => (range = r),
    range: () => range,
    generate: mesh.generate,
    dialMore,
    async stop() {
      await verification.stop().catch(() => undefined)
      await mesh.stop()
      await node.stop()
    },
  }
}
