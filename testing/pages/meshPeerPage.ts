/**
 * The mesh peer test page: a page serving a layer range of a model to the mesh (libp2p on this
 * main thread, inference in the engine worker), driven from Playwright through `window.meshPeer`.
 * Not the app; the React app comes later.
 */
import { multiaddr } from '@multiformats/multiaddr'
import { createMeshPeer, type MeshPeer } from '../../shared/mesh/createMeshPeer.ts'
import type { MeshGenerateResult } from '../../shared/mesh/forwardService.ts'
import type { PeerShard } from '../../shared/mesh/planRoute.ts'
import { createEngineClient, type EngineClient } from '../../web/engine/engineClient.ts'
import { connectRelay, createBrowserLibp2p, type BrowserLibp2p } from '../../web/mesh/createBrowserLibp2p.ts'
import { asShardSession, workerShard } from '../../web/mesh/workerShard.ts'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { loadOrCreateBrowserIdentity } from '../../web/identity/indexedDbIdentity.ts'
import { startPageOracleAgent } from '../../web/agent/pageOracleAgent.ts'
import type { Logger } from '../../shared/logger.ts'
import { parseModelConfig } from '../../shared/model/modelSpec.ts'
import { createServingVerification, type ServingVerification } from '../../shared/verify/servingVerification.ts'

export type MeshPeerStartParams = {
  /** Folder URL of the checkpoint, e.g. `/models/docs-llama-7m/`. */
  modelUrl: string
  /** Model name on the wire. */
  model: string
  /** The layers to serve; absent: an origin-only peer. */
  range?: { start: number; end: number }
  /** @default 'wasm' */
  device?: 'wasm' | 'webgpu'
  /** A relay's `/ws` multiaddr (with `/p2p/…`). */
  relay: string
  /** Other addresses to dial directly (Node hosts' `/ws` addresses). */
  dial?: string[]
}

export type MeshPeerInfo = { peerId: string; multiaddrs: string[]; numLayers: number; hiddenSize: number; device?: string }

export type MeshPeerConnection = { peerId: string; remoteAddr: string; direct: boolean; limited: boolean }

/** What `window.meshPeer` holds. */
export type MeshPeerApi = {
  start(params: MeshPeerStartParams): Promise<MeshPeerInfo>
  /** Runs a generation with this page as the origin. */
  generate(params: { peers: PeerShard[]; numLayers: number; inputIds: number[]; maxNewTokens: number; eosTokenIds?: number[] }): Promise<MeshGenerateResult>
  connections(): MeshPeerConnection[]
  stop(): Promise<void>
  /** This page's peer id, from its identity in IndexedDB (created on first use). */
  peerId(): Promise<string>
  /**
   * Joins an Oracle as an Orban agent: libp2p up (relay, dials), hardware and score measured, the
   * range each TASK_ASSIGN gives loaded in the worker and served.
   */
  joinOracle(params: { oracle: string; modelUrl: string; model: string; relay: string; dial?: string[]; device?: 'wasm' | 'webgpu'; heartbeatIntervalMs?: number }): Promise<{ peerId: string; agentId: string; multiaddrs: string[] }>
  /** The range served now, from the Oracle's assignment. */
  oracleRange(): { start: number; end: number } | undefined
}

declare global {
  interface Window {
    meshPeer?: MeshPeerApi
  }
}

/** Every mesh log line to the console, with ms since the page opened (Playwright tests collect it). */
const consoleLogger: Logger = {
  debug: (obj, msg) => console.debug(`${performance.now().toFixed(0)} debug ${msg ?? ''} ${JSON.stringify(obj)}`),
  info: (obj, msg) => console.info(`${performance.now().toFixed(0)} info ${msg ?? ''} ${JSON.stringify(obj)}`),
  warn: (obj, msg) => console.warn(`${performance.now().toFixed(0)} warn ${msg ?? ''} ${JSON.stringify(obj)}`),
  error: (obj, msg) => console.error(`${performance.now().toFixed(0)} error ${msg ?? ''} ${JSON.stringify(obj)}`),
}

let engine: EngineClient | undefined
let node: BrowserLibp2p | undefined
let mesh: MeshPeer | undefined
let oracleAgent: Awaited<ReturnType<typeof startPageOracleAgent>> | undefined
let verification: ServingVerification | undefined

/** Commitments and audits for what the page serves, as the contributor app's page mesh has them (startPageMesh). */
async function servingVerification(model: string, hiddenSize: number): Promise<ServingVerification> {
  const privateKey = await loadOrCreateBrowserIdentity()
  verification = createServingVerification({ node: node!, signer: { peerId: node!.peerId.toString(), sign: (d) => privateKey.sign(d) }, model, hiddenSize, shard: () => mesh?.service.shard() })
  await verification.start()
  return verification
}

window.meshPeer = {
  async peerId() {
    return peerIdFromPrivateKey(await loadOrCreateBrowserIdentity()).toString()
  },
  async start(params) {
    if (node) throw new Error('already started')
    engine = createEngineClient()
    // The config gives the model's shape even on an origin-only peer.
    const spec = parseModelConfig(await (await fetch(new URL('config.json', new URL(params.modelUrl, location.href)))).json())
    let shard
    let device: string | undefined
    if (params.range) {
      const loaded = await engine.load({ baseUrl: params.modelUrl, ranges: [params.range], device: params.device ?? 'wasm' })
      shard = workerShard(engine, loaded, loaded.shards[0]!)
      device = loaded.shards[0]!.device
    }
    node = await createBrowserLibp2p({ privateKey: await loadOrCreateBrowserIdentity() })
    const addrs = await connectRelay(node, params.relay)
    for (const a of params.dial ?? []) await node.dial(multiaddr(a), { signal: AbortSignal.timeout(20_000) })
    const hiddenSize = spec.hiddenSize
    const numLayers = spec.numLayers
    const { stepLog } = await servingVerification(params.model, hiddenSize)
    mesh = await createMeshPeer({ node, model: params.model, numLayers, hiddenSize, shard: shard && asShardSession(shard), range: () => params.range, stepTimeoutMs: 20_000, stepLog, logger: consoleLogger })
    document.getElementById('status')!.textContent = `serving ${params.range ? `${params.range.start}-${params.range.end}` : 'nothing (origin)'} as ${node.peerId}`
    return { peerId: node.peerId.toString(), multiaddrs: node.getMultiaddrs().map(String).length ? node.getMultiaddrs().map(String) : addrs, numLayers, hiddenSize, device }
  },
  async generate(params) {
    if (!mesh) throw new Error('not started')
    return mesh.generate({ ...params, peers: () => params.peers })
  },
  connections() {
    return (node?.getConnections() ?? []).map((c) => ({ peerId: c.remotePeer.toString(), remoteAddr: c.remoteAddr.toString(), direct: c.direct, limited: c.limits != null }))
  },
  async joinOracle(params) {
    if (node) throw new Error('already started')
    engine = createEngineClient()
    const spec = parseModelConfig(await (await fetch(new URL('config.json', new URL(params.modelUrl, location.href)))).json())
    const privateKey = await loadOrCreateBrowserIdentity()
    node = await createBrowserLibp2p({ privateKey })
    const relayed = await connectRelay(node, params.relay)
    for (const a of params.dial ?? []) await node.dial(multiaddr(a), { signal: AbortSignal.timeout(20_000) })
    // Peers learn the page's range (and that it serves none yet) over the info protocol, like a Node host's.
    const { stepLog } = await servingVerification(params.model, spec.hiddenSize)
    mesh = await createMeshPeer({ node, model: params.model, numLayers: spec.numLayers, hiddenSize: spec.hiddenSize, range: () => oracleAgent?.range(), stepTimeoutMs: 20_000, stepLog, logger: consoleLogger })
    const multiaddrs = () => (node!.getMultiaddrs().length ? node!.getMultiaddrs().map(String) : relayed)
    oracleAgent = await startPageOracleAgent({
      oracle: params.oracle,
      modelUrl: params.modelUrl,
      model: params.model,
      benchmarkUrl: params.modelUrl,
      engine,
      service: mesh.service,
      privateKey,
      peerId: node.peerId.toString(),
      multiaddrs,
      device: params.device ?? 'wasm',
      heartbeatIntervalMs: params.heartbeatIntervalMs,
      onRange: (r) => (document.getElementById('status')!.textContent = r ? `serving ${r.start}-${r.end} for the oracle` : 'idle'),
    })
    await oracleAgent.agent.ready(AbortSignal.timeout(60_000))
    return { peerId: node.peerId.toString(), agentId: oracleAgent.agent.agentId, multiaddrs: multiaddrs() }
  },
  oracleRange() {
    return oracleAgent?.range()
  },
  async stop() {
    await oracleAgent?.agent.stop()
    oracleAgent = undefined
    await verification?.stop().catch(() => undefined)
    verification = undefined
    await mesh?.stop()
    mesh = undefined
    await node?.stop()
    engine?.terminate()
    node = undefined
  },
}
document.getElementById('status')!.textContent = 'ready'
