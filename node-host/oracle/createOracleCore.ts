import { EventEmitter } from 'node:events'
import type { Logger } from '../../shared/logger.ts'
import { assignLayers } from '../../shared/oracle/assignLayers.ts'
import type { InferenceProofBody, PipelineEventData, Topology, TopologyNode } from '../../shared/oracle/plumiseSchemas.ts'
import type { ModelInfo } from './modelInfo.ts'
import type { LayerRange, NodeBudget, NodeKind, OracleStore, StoredNode, StoredProof } from './store/oracleStore.ts'
import { inferenceProofHash } from '../../shared/chain/proofHash.ts'

export type OracleCoreInit = {
  store: OracleStore
  /** The models this Oracle serves (their names are the wire names agents register for). */
  models: ModelInfo[]
  /** A node not heard from for this long is dropped and its layers reassigned. @default 600_000 (10 min) */
  silenceMs?: number
  /**
   * A node whose channel closed (`absent`) keeps its range this long, so a reconnect keeps it;
   * then it is dropped and its layers re-planned among the connected nodes. @default 5_000
   */
  reconnectGraceMs?: number
  /**
   * The same grace for Orban nodes reloaded from the store: their agents reconnect to a restarted
   * Oracle with a backoff, so they get longer. @default 60_000
   */
  restartGraceMs?: number
  /** Copies of each layer the assignment aims for. @default assignLayers' default */
  replicas?: number
  /**
   * Use every node that can serve (`assignLayers`' `grow`): pipelines beyond `replicas`, copies of
   * the weakest stretches; false leaves nodes beyond `replicas` pipelines idle as spares. @default true
   */
  grow?: boolean
  logger: Logger
  /** Clock, unix ms. @default Date.now */
  now?: () => number
  /** The reward epoch metrics are booked to (the chain's, once wired). @default () => 0 */
  epoch?: () => number
  /** How often silence is checked (and observed serving time saved). @default min(silenceMs / 4, 30 s) */
  sweepIntervalMs?: number
  /**
   * The libp2p peer a wallet is bound to (its on-chain registration, binding verified), for wallets
   * that are not Plumise nodes themselves: their reports are booked against the Orban node of that
   * peer. Undefined when the wallet has no verified binding. Without it only Plumise nodes report.
   */
  walletPeer?: (wallet: string) => Promise<string | undefined>
  /** Peers the Oracle took out after failed spot checks (verifyLedger.ts): refused a range. */
  excludedPeer?: (peerId: string) => boolean
  /** How metrics claims are bounded by what the Oracle observed (see `BookingBounds`). */
  bounds?: Partial<BookingBounds>
}

/**
 * The rule that bounds a metrics report. The Oracle observes a node *serving* while it is
 * registered, ready and holds a layer range, and it hears from it (Plumise reports, Orban
 * heartbeats): each time it hears from a serving node it credits the time since it last heard
 * from it, up to `livenessGapMs`, to the node's budget: that many seconds of uptime, and
 * `max(benchmarkTokPerSec, minTokPerSec) × tokenHeadroom` tokens per second. A report books at
 * most what the budget holds, and takes it out: uptime ≤ time seen serving, tokens ≤ serving time
 * × measured capacity; requests ≤ booked tokens (a request forwards at least one position); mean
 * latency ≥ the time its tokens take at that capacity. A budget keeps at most `budgetCapS` seconds
 * (and their tokens) that no report claimed. No free allowance: what was not observed is not paid.
 * Not bounds, because the node itself writes them: Orban METRICS_BATCH figures; nor are proofs
 * (verifyInference names the origin, not the shards the tokens went through: issue "Honest compute").
 */
export type BookingBounds = {
  /** Longest silence still counted as serving (the registry counts an agent active 300 s after a heartbeat). @default 300_000 */
  livenessGapMs: number
  /** Tokens per second assumed for a node that declares a lower (or no) benchmark score. @default 100 */
  minTokPerSec: number
  /** Positions a node may forward per decode token/s of its score: prefill runs many positions per step, a shard is a fraction of the model. @default 32 */
  tokenHeadroom: number
  /** Most unclaimed serving seconds a budget keeps. @default 3600 */
  budgetCapS: number
}

export const DEFAULT_BOOKING_BOUNDS: BookingBounds = { livenessGapMs: 300_000, minTokPerSec: 100, tokenHeadroom: 32, budgetCapS: 3600 }

export type JoinParameters = {
  /** Lowercase wallet for 'plumise' nodes, agent_id for 'orban' nodes. */
  id: string
  kind: NodeKind
  model: string
  grpcEndpoint?: string
  httpEndpoint?: string
  ramMb: number
  vramMb: number
  /** 'cpu' (and 'wasm') nodes are sized by RAM, others by VRAM (RAM when VRAM is 0). */
  device: string
  /** The node's score. @default 0 */
  benchmarkTokPerSec?: number
  peerId?: string
  multiaddrs?: string[]
}

export type JoinResult = {
  /** The node's layers; undefined when the assignment left it without any (standby). */
  range: LayerRange | undefined
  totalLayers: number
  /** First registration (not a re-registration of a known id). */
  isNew: boolean
}

/** A node's range changed: given, moved, or taken away (`range` undefined). */
export type AssignmentChange = { id: string; model: string; range: LayerRange | undefined; previous: LayerRange | undefined }

export type OracleCoreEvents = {
  topology: [PipelineEventData<'pipeline:topology'>]
  nodeStatus: [PipelineEventData<'pipeline:nodeStatus'>]
  nodeJoined: [PipelineEventData<'pipeline:nodeJoined'>]
  nodeLeft: [PipelineEventData<'pipeline:nodeLeft'>]
  assignment: [AssignmentChange]
}

export type OracleNode = StoredNode & {
  range: LayerRange | undefined
  /** Unix ms, in memory only: reset to load time on restart. */
  lastSeen: number
  /** Unix ms its channel closed (undefined: connected). An absent node is given no range; it is dropped after the grace. */
  absentSince: number | undefined
}

export type MetricsReport = {
  /** Lowercase wallet. */
  agent: string
  /** Cumulative since the agent started. */
  tokensProcessed: number
  requestCount: number
  avgLatencyMs: number
  uptimeSeconds: number
  proofs?: InferenceProofBody[]
}

export type MetricsResult = {
  /** The counters went backwards (the agent restarted): the new values were taken whole. */
  shouldReset: boolean
  epoch: number
  /** What the report claims: the rise of its counters. */
  delta: { tokens: number; requests: number }
  /** What was booked after the bounds, and the node it was booked against. */
  booked: { tokens: number; requests: number; uptimeSeconds: number; avgLatencyMs: number; node: string }
  /** Some claim was more than the Oracle observed. */
  clamped: boolean
}

export type OracleCore = {
  /** Registers (or re-registers) a node and reassigns its model's layers. Throws UnknownModelError. */
  join(params: JoinParameters): Promise<JoinResult>
  /** The node has loaded its layers. Throws UnknownNodeError. */
  ready(id: string): Promise<void>
  /** Liveness: the node was heard from. False when unknown. */
  touch(id: string): boolean
  /** The node's load as it reported it (heartbeat), shown in the topology. False when unknown. */
  reportLoad(id: string, load: { activeSessions: number; queueDepth: number }): boolean
  /** Drops a node and reassigns its layers. False when unknown. */
  leave(id: string, reason: string): Promise<boolean>
  /**
   * Its channel closed without a goodbye: it is no longer ready, is given no range and is moved
   * nowhere, but keeps the range it has for `graceMs` (default `reconnectGraceMs`); unless `present`
   * or `join` is called before, it is then dropped and its layers re-planned. False when unknown.
   */
  absent(id: string, graceMs?: number): Promise<boolean>
  /** Its channel is back: the pending drop is cancelled (it re-registers and reports ready again). False when unknown. */
  present(id: string): boolean
  /** Drops every node silent for `silenceMs`; runs on a timer too. Returns the ids dropped. */
  sweep(): Promise<string[]>
  /** The model's assigned nodes in pipeline order, in the wire format. Throws UnknownModelError. */
  topology(model: string): Topology
  rangeOf(id: string): LayerRange | undefined
  node(id: string): OracleNode | undefined
  nodes(model?: string): OracleNode[]
  models(): ModelInfo[]
  /**
   * Books a metrics report: deltas of the cumulative counters bounded by what the Oracle observed
   * of the agent's node (`BookingBounds`), proofs; counts as liveness. Throws UnknownNodeError when
   * the wallet is no node: neither a Plumise node nor bound (`walletPeer`) to a connected one.
   */
  recordMetrics(report: MetricsReport): Promise<MetricsResult>
  /** What the node's observed serving time still allows it to book. */
  budget(nodeId: string): { servingSeconds: number; tokens: number } | undefined
  readonly events: EventEmitter<OracleCoreEvents>
  now(): number
  /** Stops the silence timer and waits for pending writes (the store stays open: its owner closes it). */
  close(): Promise<void>
}

export class UnknownModelError extends Error {
  readonly model: string
  readonly served: string[]

  constructor(model: string, served: string[]) {
    super(`model "${model}" is not served by this oracle; it serves: ${served.map((s) => `"${s}"`).join(', ') || 'nothing'}`)
    this.model = model
    this.served = served
    this.name = 'UnknownModelError'
  }
}

/**
 * A join whose id belongs to the other kind's id space: Plumise nodes are keyed by their 0x
 * wallet, Orban agents by agent ids that never start with 0x, and no id changes kind, so an Orban
 * agent can never take (or drop, or touch) a Plumise wallet's node, nor the other way round.
 */
/** The node's peer failed spot checks (see verifyLedger.ts): it gets no layers. */
export class ExcludedPeerError extends Error {
  readonly peerId: string

  constructor(peerId: string) {
    super(`peer ${peerId} is out of assignment after failed spot checks (GET /api/v1/verify/status?peerId=${peerId} says why)`)
    this.peerId = peerId
    this.name = 'ExcludedPeerError'
  }
}

export class NodeIdSpaceError extends Error {
  readonly id: string
  readonly kind: NodeKind

  constructor(id: string, kind: NodeKind, reason: string) {
    super(`node id ${id} cannot join as ${kind}: ${reason}`)
    this.id = id
    this.kind = kind
    this.name = 'NodeIdSpaceError'
  }
}

export class UnknownNodeError extends Error {
  readonly id: string

  constructor(id: string, message = `node ${id} is not registered`) {
    super(message)
    this.id = id
    this.name = 'UnknownNodeError'
  }
}

const MIB = 1 << 20
const CPU_DEVICES = new Set(['cpu', 'wasm'])
const capacityBytes = (n: StoredNode) => (CPU_DEVICES.has(n.device.toLowerCase()) || n.vramMb === 0 ? n.ramMb : n.vramMb) * MIB
const sameRange = (a: LayerRange | undefined, b: LayerRange | undefined) => a?.start === b?.start && a?.end === b?.end

/**
 * `observedAt`: when the Oracle last heard from it while it was serving (undefined: not serving).
 * `absentSince`: when its channel closed (undefined: connected); in memory only.
 */
type LiveNode = StoredNode & { lastSeen: number; touchedAt: number; observedAt?: number; absentSince?: number }

/**
 * Pipeline order for agents that route by it (the upstream agent calls the node of order + 1):
 * whole chains `[0, L)` one after another, each in layer order, then the nodes in no chain.
 * Chains are found greedily from the ranges (earliest registered first), so the order survives
 * a restart without the planner's own chain list.
 */
export function pipelineOrder<T extends { seq: number }>(nodes: T[], rangeOf: (n: T) => LayerRange, numLayers: number): T[] {
  const bySeq = [...nodes].sort((a, b) => a.seq - b.seq)
  const used = new Set<T>()
  const out: T[] = []
  // Depth-first from layer 0 (ranges only move forward, so no node repeats); dead ends memoized.
  const dead = new Set<number>()
  const walk = (at: number): T[] | undefined => {
    if (at === numLayers) return []
    if (dead.has(at)) return undefined
    for (const n of bySeq) {
      if (used.has(n) || rangeOf(n).start !== at || rangeOf(n).end <= at) continue
      const tail = walk(rangeOf(n).end)
      if (tail) return [n, ...tail]
    }
    dead.add(at)
    return undefined
  }
  for (let chain = walk(0); chain?.length; chain = walk(0)) {
    for (const n of chain) used.add(n)
    out.push(...chain)
    dead.clear()
  }
  const rest = bySeq.filter((n) => !used.has(n)).sort((a, b) => rangeOf(a).start - rangeOf(b).start || rangeOf(a).end - rangeOf(b).end || a.seq - b.seq)
  return [...out, ...rest]
}

/**
 * The Oracle: who serves which layers of which model. Holds the nodes in memory, writes
 * every change through to the store before announcing it, reloads everything on start (nodes
 * keep their ranges; silence clocks restart at load time), assigns layers with
 * `assignLayers` from the models' real sizes and the nodes' memory and scores.
 */
export async function createOracleCore(init: OracleCoreInit): Promise<OracleCore> {
  const { store, logger } = init
  const now = init.now ?? Date.now
  const silenceMs = init.silenceMs ?? 600_000
  const reconnectGraceMs = init.reconnectGraceMs ?? 5_000
  const restartGraceMs = init.restartGraceMs ?? 60_000
  /** Pending drops of absent nodes, by id. */
  const graceTimers = new Map<string, ReturnType<typeof setTimeout>>()
  /** Grace of each absent node (ms), for the sweep's check by the injected clock. */
  const graceOf = new Map<string, number>()
  const epochOf = init.epoch ?? (() => 0)
  const bounds: BookingBounds = { ...DEFAULT_BOOKING_BOUNDS, ...init.bounds }
  const models = new Map<string, ModelInfo>()
  for (const m of init.models) {
    if (models.has(m.name)) throw new Error(`model "${m.name}" is given twice`)
    models.set(m.name, m)
  }
  const events = new EventEmitter<OracleCoreEvents>()
  // Every event stream subscriber listens here; the server caps how many there are.
  events.setMaxListeners(0)
  const nodes = new Map<string, LiveNode>()
  const ranges = new Map<string, LayerRange>()
  /** Each node's load as its last heartbeat said (memory only: a restart forgets it until the next). */
  const loads = new Map<string, { activeSessions: number; queueDepth: number }>()

  const modelInfo = (name: string) => {
    const m = models.get(name)
    if (!m) throw new UnknownModelError(name, [...models.keys()])
    return m
  }

  // One change at a time: assignments read and write the whole model.
  let queue: Promise<unknown> = Promise.resolve()
  const serial = <T>(fn: () => Promise<T>): Promise<T> => {
    const run = queue.then(fn)
    queue = run.catch(() => {})
    return run
  }

  // Reload: nodes of models still served, their ranges where still valid.
  const loadedAt = now()
  const stored = await store.loadNodes()
  let nextSeq = stored.reduce((max, n) => Math.max(max, n.seq), 0) + 1
  for (const n of stored) {
    if (!models.has(n.model)) {
      logger.warn({ id: n.id, model: n.model }, 'stored node is for a model not served now: ignored (kept in the store)')
      continue
    }
    // Orban agents always re-register after a reconnect and report `serving` again: until then an
    // Oracle that was down cannot know they still hold their layers (a host may have gone for good).
    // Until its agent reconnects it is absent: it keeps its range for the restart grace, gets no new one.
    nodes.set(n.id, { ...n, ready: n.kind === 'orban' ? false : n.ready, lastSeen: loadedAt, touchedAt: 0, absentSince: n.kind === 'orban' ? loadedAt : undefined })
  }
  const stale = new Set<string>()
  for (const a of await store.loadAssignments()) {
    const n = nodes.get(a.nodeId)
    const info = n && models.get(n.model)
    if (!n || !info || a.model !== n.model) continue
    if (a.range.start < 0 || a.range.end > info.numLayers || a.range.start >= a.range.end) stale.add(n.model)
    else ranges.set(n.id, a.range)
  }
  if (nodes.size) logger.info({ nodes: nodes.size, assigned: ranges.size }, 'reloaded nodes and assignments from the store')

  // ---- what the Oracle observes of each node, and what that allows it to book (BookingBounds) ----
  const budgets = new Map<string, NodeBudget>((await store.loadBudgets()).map((b) => [b.nodeId, b]))
  /** Budgets changed since they were last written (written by the sweep timer, a booking, close). */
  const dirty = new Set<string>()
  const serving = (n: LiveNode) => n.ready && ranges.has(n.id)
  const rateOf = (n: StoredNode) => Math.max(n.benchmarkTokPerSec, bounds.minTokPerSec) * bounds.tokenHeadroom
  const budgetOf = (id: string, t: number): NodeBudget => {
    let b = budgets.get(id)
    if (!b) budgets.set(id, (b = { nodeId: id, servingSeconds: 0, tokens: 0, updatedAt: t }))
    return b
  }
  /** The node was heard from at `t`: the time since it was last heard while serving is credited (up to the liveness gap). */
  const heard = (n: LiveNode, t: number) => {
    if (n.observedAt !== undefined && t > n.observedAt) {
      const seconds = Math.min(t - n.observedAt, bounds.livenessGapMs) / 1000
      const b = budgetOf(n.id, t)
      b.servingSeconds = Math.min(bounds.budgetCapS, b.servingSeconds + seconds)
      b.tokens = Math.min(rateOf(n) * bounds.budgetCapS, b.tokens + seconds * rateOf(n))
      b.updatedAt = t
      dirty.add(n.id)
    }
    n.observedAt = serving(n) ? t : undefined
  }
  /** Its state changed without a word from it: time since it was last heard is not credited if it stopped serving. */
  const settle = (n: LiveNode, t: number) => {
    if (!serving(n)) n.observedAt = undefined
    else n.observedAt ??= t
  }
  const flushBudgets = async () => {
    if (!dirty.size) return
    const out = [...dirty].flatMap((id) => (budgets.has(id) ? [{ ...budgets.get(id)! }] : []))
    dirty.clear()
    await store.saveBudgets(out)
  }
  // The time the Oracle was down is not credited: serving nodes are observed from load time on.
  for (const n of nodes.values()) settle(n, loadedAt)

  /** The node a wallet reports for: its own Plumise node, or the Orban node of the peer it is verifiably bound to. */
  const nodeOfWallet = (wallet: string, peer: string | undefined): LiveNode | undefined => {
    const own = nodes.get(wallet)
    if (own?.kind === 'plumise') return own
    if (peer === undefined) return undefined
    return [...nodes.values()].find((n) => n.kind === 'orban' && n.peerId === peer)
  }

  const members = (model: string) => [...nodes.values()].filter((n) => n.model === model)
  /** Nodes the planner may give ranges to or move: connected ones. Absent ones keep what they hold, frozen. */
  const present = (n: LiveNode) => n.absentSince === undefined

  function topology(model: string): Topology {
    const info = modelInfo(model)
    const assigned = pipelineOrder(
      members(model).filter((n) => ranges.has(n.id)),
      (n) => ranges.get(n.id)!,
      info.numLayers,
    )
    const list = assigned.map((n, i): TopologyNode => {
      const r = ranges.get(n.id)!
      return {
        id: n.seq,
        nodeAddress: n.id,
        modelName: model,
        layerStart: r.start,
        layerEnd: r.end,
        totalLayers: info.numLayers,
        grpcEndpoint: n.grpcEndpoint,
        httpEndpoint: n.httpEndpoint,
        ramMb: n.ramMb,
        device: n.device,
        vramMb: n.vramMb,
        benchmarkTokPerSec: n.benchmarkTokPerSec,
        ready: n.ready,
        pipelineOrder: i,
        nodeMode: 'standalone',
        clusterId: null,
        rpcPort: 50052,
        lanIp: null,
        createdAt: new Date(n.createdAt).toISOString(),
        updatedAt: new Date(Math.max(n.updatedAt, n.touchedAt)).toISOString(),
        kind: n.kind,
        peerId: n.peerId,
        multiaddrs: n.multiaddrs,
        ...loads.get(n.id),
      }
    })
    return { model, nodes: list, count: list.length, totalLayers: info.numLayers }
  }

  /** Recomputes a model's ranges from its live nodes, persists them, then announces the changes. */
  async function reassign(model: string): Promise<void> {
    const info = modelInfo(model)
    // Absent nodes are no part of the plan: never given a range (the issue saw ranges sent to
    // agents 158 ms after their socket closed), never moved; their ranges stay as they are until
    // they come back or the grace ends (then `remove` re-plans without them).
    const all = members(model)
    const live = all.filter(present)
    const frozen = all.filter((n) => !present(n) && ranges.has(n.id)).map((n) => [n.id, ranges.get(n.id)!] as const)
    const current = new Map(live.filter((n) => ranges.has(n.id)).map((n) => [n.id, ranges.get(n.id)!]))
    let next = new Map<string, LayerRange>()
    if (live.length) {
      const result = assignLayers({
        numLayers: info.numLayers,
        layerBytes: info.layerBytes,
        embedBytes: info.embedBytes,
        headBytes: info.headBytes,
        // Plumise agents cannot run with an empty range: they always get one that a route continues from.
        nodes: live.map((n) => ({ id: n.id, memoryBytes: capacityBytes(n), score: n.benchmarkTokPerSec, joinedAt: n.createdAt, mustServe: n.kind === 'plumise' })),
        current,
        replicas: init.replicas,
        grow: init.grow ?? true,
      })
      next = result.ranges
      const uncovered = result.copies.flatMap((c, layer) => (c === 0 ? [layer] : []))
      if (uncovered.length) logger.warn({ model, uncovered }, 'some layers have no node')
    }
    const changes: AssignmentChange[] = []
    for (const n of live) {
      const previous = ranges.get(n.id)
      const range = next.get(n.id)
      if (!sameRange(previous, range)) changes.push({ id: n.id, model, range, previous })
    }
    await store.replaceAssignments(model, new Map([...next, ...frozen]), now())
    // An Orban node that was moved must load its new range before routes go through it: not ready
    // until its task reports `serving` again (Plumise nodes are told their range only on register).
    for (const c of changes) {
      const n = nodes.get(c.id)
      if (n && n.kind === 'orban' && n.ready) {
        const t = now()
        const next = { ...n, ready: false, updatedAt: t }
        nodes.set(n.id, next)
        await store.upsertNode(next)
        events.emit('nodeStatus', { address: n.id, model, ready: false, timestamp: t })
      }
    }
    for (const n of live) ranges.delete(n.id)
    for (const [id, r] of next) ranges.set(id, r)
    for (const n of live) {
      const current = nodes.get(n.id)
      if (current) settle(current, now())
    }
    for (const c of changes) {
      logger.info({ id: c.id, model, range: c.range, previous: c.previous }, 'assignment changed')
      events.emit('assignment', c)
    }
    events.emit('topology', { ...topology(model), timestamp: now() })
  }

  async function remove(id: string, reason: string): Promise<boolean> {
    const n = nodes.get(id)
    if (!n) return false
    clearGrace(id)
    await store.deleteNode(id)
    nodes.delete(id)
    loads.delete(id)
    const previous = ranges.get(id)
    ranges.delete(id)
    logger.info({ id, model: n.model, reason }, 'node left')
    if (previous) events.emit('assignment', { id, model: n.model, range: undefined, previous })
    events.emit('nodeLeft', { address: id, model: n.model, reason, timestamp: now() })
    await reassign(n.model)
    return true
  }

  const view = (n: LiveNode): OracleNode => {
    const { touchedAt: _, observedAt: _o, absentSince, ...rest } = n
    return { ...rest, multiaddrs: [...n.multiaddrs], range: ranges.get(n.id), absentSince }
  }

  function clearGrace(id: string) {
    clearTimeout(graceTimers.get(id))
    graceTimers.delete(id)
    graceOf.delete(id)
  }

  /** Starts (or restarts) the grace of an absent node: when it ends with the node still absent, the node is dropped. */
  function startGrace(id: string, graceMs: number) {
    clearGrace(id)
    graceOf.set(id, graceMs)
    const since = nodes.get(id)?.absentSince
    const timer = setTimeout(() => {
      graceTimers.delete(id)
      void serial(async () => {
        const n = nodes.get(id)
        if (!n || n.absentSince === undefined || n.absentSince !== since) return
        await remove(id, `disconnected for ${Math.round((now() - n.absentSince) / 1000)} s (reconnect grace ${graceMs / 1000} s)`)
      }).catch((err: unknown) => logger.error({ err, id }, 'dropping a disconnected node failed'))
    }, graceMs)
    timer.unref()
    graceTimers.set(id, timer)
  }

  for (const n of nodes.values()) if (n.absentSince !== undefined) startGrace(n.id, Math.max(restartGraceMs, reconnectGraceMs))

  for (const model of stale) {
    logger.warn({ model }, 'stored ranges do not fit the model: reassigning')
    await reassign(model)
  }

  const sweep = () =>
    serial(async () => {
      const cutoff = now() - silenceMs
      const dropped: string[] = []
      for (const n of [...nodes.values()]) {
        const graceOver = n.absentSince !== undefined && now() - n.absentSince >= (graceOf.get(n.id) ?? reconnectGraceMs)
        if (n.lastSeen > cutoff && !graceOver) continue
        await remove(n.id, graceOver ? `disconnected for ${Math.round((now() - n.absentSince!) / 1000)} s` : `silent for ${Math.round((now() - n.lastSeen) / 1000)} s`)
        dropped.push(n.id)
      }
      await flushBudgets()
      return dropped
    })

  const timer = setInterval(
    () => void sweep().catch((err: unknown) => logger.error({ err }, 'silence sweep failed')),
    init.sweepIntervalMs ?? Math.min(silenceMs / 4, 30_000),
  )
  timer.unref()

  return {
    events,
    now,
    models: () => [...models.values()],
    topology,
    rangeOf: (id) => ranges.get(id),
    node: (id) => {
      const n = nodes.get(id)
      return n && view(n)
    },
    nodes: (model) => [...nodes.values()].filter((n) => model === undefined || n.model === model).map(view),
    join: (p) =>
      serial(async () => {
        const info = modelInfo(p.model)
        const t = now()
        const existing = nodes.get(p.id)
        if (p.kind === 'orban' && /^0x/i.test(p.id)) throw new NodeIdSpaceError(p.id, p.kind, 'ids starting with 0x are wallet addresses (Plumise nodes)')
        if (existing && existing.kind !== p.kind) throw new NodeIdSpaceError(p.id, p.kind, `it is a ${existing.kind} node`)
        if (p.peerId && init.excludedPeer?.(p.peerId)) throw new ExcludedPeerError(p.peerId)
        const record: LiveNode = {
          id: p.id,
          kind: p.kind,
          model: p.model,
          seq: existing?.seq ?? nextSeq++,
          grpcEndpoint: p.grpcEndpoint ?? '',
          httpEndpoint: p.httpEndpoint ?? '',
          ramMb: p.ramMb,
          vramMb: p.vramMb,
          device: p.device,
          benchmarkTokPerSec: p.benchmarkTokPerSec ?? 0,
          // A (re-)registering node loads its layers before it says ready.
          ready: false,
          peerId: p.peerId ?? null,
          multiaddrs: p.multiaddrs ?? [],
          createdAt: existing?.createdAt ?? t,
          updatedAt: t,
          lastSeen: t,
          touchedAt: t,
          absentSince: undefined,
        }
        clearGrace(p.id)
        await store.upsertNode(record)
        nodes.set(p.id, record)
        const moved = existing && existing.model !== p.model ? existing.model : undefined
        if (moved) {
          const previous = ranges.get(p.id)
          ranges.delete(p.id)
          if (previous) events.emit('assignment', { id: p.id, model: moved, range: undefined, previous })
          events.emit('nodeLeft', { address: p.id, model: moved, reason: `moved to ${p.model}`, timestamp: t })
        }
        if (!existing || moved) {
          logger.info({ id: p.id, kind: p.kind, model: p.model }, 'node joined')
          events.emit('nodeJoined', { address: p.id, model: p.model, kind: p.kind, timestamp: t })
        }
        await reassign(p.model)
        if (moved) await reassign(moved)
        return { range: ranges.get(p.id), totalLayers: info.numLayers, isNew: !existing }
      }),
    ready: (id) =>
      serial(async () => {
        const n = nodes.get(id)
        if (!n) throw new UnknownNodeError(id)
        const t = now()
        const next = { ...n, ready: true, updatedAt: t, lastSeen: t, touchedAt: t }
        await store.upsertNode(next)
        nodes.set(id, next)
        heard(next, t)
        events.emit('nodeStatus', { address: id, model: n.model, ready: true, timestamp: t })
        events.emit('topology', { ...topology(n.model), timestamp: t })
      }),
    reportLoad: (id, load) => {
      if (!nodes.has(id)) return false
      loads.set(id, { activeSessions: load.activeSessions, queueDepth: load.queueDepth })
      return true
    },
    touch: (id) => {
      const n = nodes.get(id)
      if (!n) return false
      n.lastSeen = n.touchedAt = now()
      heard(n, n.lastSeen)
      return true
    },
    leave: (id, reason) => serial(() => remove(id, reason)),
    absent: (id, graceMs = reconnectGraceMs) =>
      serial(async () => {
        const n = nodes.get(id)
        if (!n) return false
        if (n.absentSince !== undefined) return true
        const t = now()
        const wasReady = n.ready
        const next: LiveNode = { ...n, ready: false, updatedAt: t, absentSince: t }
        nodes.set(id, next)
        settle(next, t)
        if (wasReady) await store.upsertNode(next)
        logger.info({ id, model: n.model, range: ranges.get(id), graceMs }, 'node disconnected: its range is kept for the reconnect grace')
        startGrace(id, graceMs)
        if (wasReady) {
          events.emit('nodeStatus', { address: id, model: n.model, ready: false, timestamp: t })
          events.emit('topology', { ...topology(n.model), timestamp: t })
        }
        return true
      }),
    present: (id) => {
      const n = nodes.get(id)
      if (!n) return false
      clearGrace(id)
      n.absentSince = undefined
      return true
    },
    sweep,
    budget: (id) => {
      const b = budgets.get(id)
      return b && { servingSeconds: b.servingSeconds, tokens: b.tokens }
    },
    recordMetrics: async (r) => {
      // The chain is asked before the queue (a round trip); only wallets that are not Plumise nodes need it.
      const peer = nodes.get(r.agent)?.kind === 'plumise' ? undefined : await init.walletPeer?.(r.agent)
      return serial(async () => {
        const node = nodeOfWallet(r.agent, peer)
        if (!node) {
          throw new UnknownNodeError(
            r.agent,
            `wallet ${r.agent} is not a node of this oracle: register it (POST /api/v1/pipeline/register), or bind it on chain to the libp2p peer of a node host connected to this oracle`,
          )
        }
        const t = now()
        const epoch = epochOf()
        heard(node, t)
        node.lastSeen = node.touchedAt = t
        const last = await store.agentCounters(r.agent)
        const backwards = !!last && (r.tokensProcessed < last.tokens || r.requestCount < last.requests)
        // Counters are cumulative since the agent started; after a restart they start again from zero.
        const tokens = last && !backwards ? r.tokensProcessed - last.tokens : r.tokensProcessed
        const requests = last && !backwards ? r.requestCount - last.requests : r.requestCount
        const uptime = last && !backwards && last.uptimeSeconds !== null && r.uptimeSeconds >= last.uptimeSeconds ? r.uptimeSeconds - last.uptimeSeconds : r.uptimeSeconds
        // What the claims may take from what was observed (BookingBounds).
        const b = budgetOf(node.id, t)
        const booked = {
          tokens: Math.min(tokens, Math.floor(b.tokens)),
          requests: 0,
          uptimeSeconds: Math.min(uptime, b.servingSeconds),
          avgLatencyMs: r.avgLatencyMs,
          node: node.id,
        }
        booked.requests = booked.tokens > 0 ? Math.min(requests, booked.tokens) : 0
        if (booked.requests > 0) booked.avgLatencyMs = Math.max(r.avgLatencyMs, (1000 * booked.tokens) / booked.requests / rateOf(node))
        b.tokens -= booked.tokens
        b.servingSeconds -= booked.uptimeSeconds
        b.updatedAt = t
        dirty.delete(node.id)
        const clamped = booked.tokens < tokens || booked.uptimeSeconds < uptime || booked.requests < requests || booked.avgLatencyMs > r.avgLatencyMs
        const proofs: StoredProof[] = (r.proofs ?? []).map((p) => ({
          agent: r.agent,
          epoch,
          modelHash: p.modelHash.toLowerCase(),
          inputHash: p.inputHash.toLowerCase(),
          outputHash: p.outputHash.toLowerCase(),
          tokenCount: p.tokenCount,
          proofHash: inferenceProofHash({ ...p, agent: r.agent }),
          txHash: p.txHash?.toLowerCase() ?? null,
          createdAt: t,
        }))
        await store.recordMetrics({
          counters: { agent: r.agent, tokens: r.tokensProcessed, requests: r.requestCount, uptimeSeconds: r.uptimeSeconds, epoch, reportedAt: t },
          delta: { tokens: booked.tokens, requests: booked.requests, latencyMsSum: booked.avgLatencyMs * booked.requests, uptimeSeconds: booked.uptimeSeconds },
          uptimeSeconds: r.uptimeSeconds,
          proofs,
          budget: { ...b },
        })
        if (clamped) {
          logger.warn(
            { agent: r.agent, node: node.id, epoch, claimed: { tokens, requests, uptimeSeconds: uptime, avgLatencyMs: r.avgLatencyMs }, booked, left: { servingSeconds: b.servingSeconds, tokens: b.tokens } },
            'metrics: claims above what the oracle observed of the node were clamped',
          )
        }
        if (backwards) logger.info({ agent: r.agent, last: { tokens: last.tokens, requests: last.requests }, now: { tokens: r.tokensProcessed, requests: r.requestCount } }, 'agent counters went backwards (restart)')
        return { shouldReset: backwards, epoch, delta: { tokens, requests }, booked, clamped }
      })
    },
    async close() {
      clearInterval(timer)
      for (const id of [...graceTimers.keys()]) clearGrace(id)
      await queue
      await flushBudgets()
    },
  }
}
