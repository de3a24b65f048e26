import type { AppConfig } from '../../shared/app/appConfig.ts'
import type { LayerRange } from '../../shared/model/shardGraph.ts'
import { rangeBytes } from '../../shared/oracle/assignLayers.ts'
import { startPageOracleAgent } from '../agent/pageOracleAgent.ts'
import { createEngineClient, type EngineClient } from '../engine/engineClient.ts'
import { EngineWorkerCrashedError, EngineWorkerError } from '../engine/engineErrors.ts'
import { RelayUnreachableError } from '../mesh/relayUnreachableError.ts'
import { sharedPageMesh } from '../mesh/sharedPageMesh.ts'
import type { PageMesh } from '../mesh/startPageMesh.ts'
import { readModelSizes, type ModelSizes } from './readModelSizes.ts'
import { topologyAddresses } from '../mesh/sharedPageMesh.ts'
import { loadCachedScore, saveCachedScore } from './cachedScore.ts'

/** The reference model the score is measured on: the one shipped with the app, whatever the network serves. */
const BENCHMARK_URL = '/models/docs-llama-7m/'

export type ContributorPhase = 'idle' | 'starting' | 'measuring' | 'connecting' | 'waiting' | 'loading' | 'serving' | 'stopping' | 'error'

/** One second's served work, for the live chart. */
export type RateSample = { t: number; tokensPerSecond: number }

export type ContributorState = {
  phase: ContributorPhase
  /** In words, for the page: what went wrong last. */
  error?: string
  model?: string
  peerId?: string
  /** The engine backend the shard runs on (`webgpu`, `wasm`). */
  device?: string
  /** Decode tokens/s of the reference benchmark in the worker. */
  score?: number
  range?: LayerRange
  /** Download and load of the range being loaded: bytes of bytes (the steps' share of the range's weights). */
  load?: { range: LayerRange; doneBytes: number; totalBytes: number }
  peers: number
  sessions: number
  tokensForwarded: number
  steps: number
  msPerStep: number | null
  rate: RateSample[]
  servingSince?: number
  /** Earnings the Oracle booked (EARNINGS_RECORD), USD. */
  earningsUsd: number
  earningsRecords: number
  /** Ms from the click to the first range served. */
  startToServingMs?: number
  /** Ms from the click to the first time each phase was entered: where the wait goes. */
  phaseAtMs: Partial<Record<ContributorPhase, number>>
}

export type StartOptions = {
  model: string
  /** Caps the memory offered to the Oracle. */
  memoryBytes?: number
  device: 'webgpu' | 'wasm'
}

export type Contributor = {
  state(): ContributorState
  subscribe(listener: () => void): () => void
  start(options: StartOptions): Promise<void>
  /** Leaves the Oracle cleanly (it reassigns the range at once) and frees the shard. */
  stop(): Promise<void>
}

const IDLE: ContributorState = { phase: 'idle', peers: 0, sessions: 0, tokensForwarded: 0, steps: 0, msPerStep: null, rate: [], earningsUsd: 0, earningsRecords: 0, phaseAtMs: {} }
const RATE_WINDOW = 120

/**
 * The page as a contributor, without React: joins the Oracle over the Orban channel with the page's
 * identity, loads the range each task gives in the engine worker, serves it on the page's mesh
 * peer, and samples what it serves once a second.
 */
export function createContributor(config: AppConfig): Contributor {
  let state: ContributorState = IDLE
  const listeners = new Set<() => void>()
  let clickedAt = 0
  const set = (patch: Partial<ContributorState>) => {
    if (patch.phase && state.phaseAtMs[patch.phase] === undefined && clickedAt) patch.phaseAtMs = { ...state.phaseAtMs, [patch.phase]: Math.round(performance.now() - clickedAt) }
    state = { ...state, ...patch }
    for (const l of listeners) l()
  }
  type Run = { agent?: Awaited<ReturnType<typeof startPageOracleAgent>>; engine: EngineClient; mesh?: PageMesh; timer?: ReturnType<typeof setInterval>; cancelled: boolean }
  let run: Run | undefined

  function sample(mesh: PageMesh, last: { tokens: number; t: number }) {
    const s = mesh.service.stats()
    const now = Date.now()
    const tokensPerSecond = ((s.processedTokens - last.tokens) * 1000) / Math.max(1, now - last.t)
    last.tokens = s.processedTokens
    last.t = now
    set({
      peers: new Set(mesh.node.getConnections().map((c) => c.remotePeer.toString())).size,
      sessions: s.sessions,
      tokensForwarded: s.processedTokens,
      steps: s.steps,
      msPerStep: s.steps ? s.computeMs / s.steps : null,
      rate: [...state.rate, { t: now, tokensPerSecond }].slice(-RATE_WINDOW),
    })
  }

  async function start(options: StartOptions): Promise<void> {
    if (run) return
    const clicked = performance.now()
    clickedAt = clicked
    const engine = createEngineClient({ onFault: (e) => set({ error: `the engine worker failed: ${e.message}` }) })
    const thisRun: Run = { engine, cancelled: false }
    run = thisRun
    set({ ...IDLE, phaseAtMs: {}, phase: 'starting', model: options.model, error: undefined })
    try {
      const modelUrl = config.models.find((m) => m.name === options.model)?.url
      if (!modelUrl) throw new Error(`the Oracle does not serve "${options.model}"`)
      const [mesh, sizes] = await Promise.all([sharedPageMesh(config, options.model), readModelSizes(modelUrl).catch((): ModelSizes | undefined => undefined)])
      thisRun.mesh = mesh
      set({ peerId: mesh.peerId })
      // Hosts that joined since the configuration was read: dial them directly too.
      void topologyAddresses(config, options.model, () => mesh.peerId)().then((a) => mesh.dialMore(a.filter((x) => !x.includes('/p2p-circuit'))))
      const bytesOf = (r: LayerRange) => (sizes ? rangeBytes(sizes, r) : 0)
      const agent = await startPageOracleAgent({
        oracle: config.oracle,
        modelUrl,
        model: options.model,
        benchmarkUrl: BENCHMARK_URL,
        score: loadCachedScore(options.device),
        engine,
        service: mesh.service,
        privateKey: mesh.privateKey,
        peerId: mesh.peerId,
        multiaddrs: mesh.multiaddrs,
        device: options.device,
        memoryBytes: options.memoryBytes,
        heartbeatIntervalMs: 5_000,
        servedIntervalMs: 5_000,
        onStage: (stage) => set({ phase: stage }),
        onLoadProgress: (range, done, total) => {
          const totalBytes = bytesOf(range)
          set({ phase: 'loading', load: { range, doneBytes: Math.round((totalBytes * done) / Math.max(1, total)), totalBytes } })
        },
        onRange: (range) => {
          mesh.setRange(range)
          if (!range) return set({ range: undefined, phase: 'waiting' })
          set({
            range,
            phase: 'serving',
            load: state.load && { ...state.load, doneBytes: state.load.totalBytes },
            servingSince: state.servingSince ?? Date.now(),
            startToServingMs: state.startToServingMs ?? Math.round(performance.now() - clicked),
          })
        },
      })
      if (thisRun.cancelled) {
        await agent.agent.stop()
        return
      }
      thisRun.agent = agent
      saveCachedScore(options.device, { tokensPerSecond: agent.score, device: agent.device })
      set({ score: agent.score, device: agent.device, phase: state.range ? 'serving' : 'waiting' })
      agent.agent.on('earnings', (e) => set({ earningsUsd: state.earningsUsd + Number(e.earnings.final_amount_usd), earningsRecords: state.earningsRecords + 1 }))
      agent.agent.on('platform-error', (e) => set({ error: `the Oracle says: ${e.message}` }))
      agent.agent.on('state', (s) => {
        if (s === 'backoff') set({ error: 'the connection to the Oracle dropped; reconnecting…' })
        else if (s === 'ready' && state.error?.startsWith('the connection to the Oracle')) set({ error: undefined })
      })
      void agent.agent.done.then((stop) => {
        if (run === thisRun && !thisRun.cancelled) set({ phase: 'error', error: `the Oracle connection ended (${stop.reason}${stop.error ? `: ${stop.error.message}` : ''})` })
      })
      const last = { tokens: mesh.service.stats().processedTokens, t: Date.now() }
      thisRun.timer = setInterval(() => sample(mesh, last), 1000)
    } catch (e) {
      if (run === thisRun) {
        run = undefined
        engine.terminate()
        set({ phase: 'error', error: describe(e, config) })
      }
    }
  }

  async function stop(): Promise<void> {
    const current = run
    if (!current) return set({ phase: 'idle' })
    current.cancelled = true
    set({ phase: 'stopping' })
    clearInterval(current.timer)
    // The clean close first: the Oracle reassigns the range at once, then the shard is freed here.
    await current.agent?.agent.stop().catch(() => undefined)
    current.mesh?.setRange(undefined)
    await current.mesh?.service.setShard(undefined, 0).catch(() => undefined)
    current.engine.terminate()
    run = undefined
    set({ ...IDLE, peerId: state.peerId, earningsUsd: state.earningsUsd, earningsRecords: state.earningsRecords })
  }

  return { state: () => state, subscribe: (l) => (listeners.add(l), () => listeners.delete(l)), start, stop }
}

/** Errors in words a contributor can act on. */
function describe(e: unknown, config: AppConfig): string {
  const err = e as Error & { stop?: { reason?: string } }
  const message = err?.message ?? String(e)
  if (/WebSocket|agent stopped|reconnect|handshake/i.test(message)) return `the Oracle at ${config.oracle} is unreachable: ${message}`
  if (e instanceof RelayUnreachableError) return `no relay could be reached, so no peer can reach this tab: ${message}`
  if (e instanceof EngineWorkerError || e instanceof EngineWorkerCrashedError) return `loading the model in this tab failed: ${message}`
  return message
}
