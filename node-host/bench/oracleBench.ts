import { performance } from 'node:perf_hooks'
import { assignLayers, coverageOf, type AssignmentNode, type LayerRange } from '../../shared/oracle/assignLayers.ts'
import { planRoute, type PeerShard } from '../../shared/mesh/planRoute.ts'

/** A model as the Oracle sizes it. */
export type OracleBenchModel = { name: string; numLayers: number; layerBytes: number; embedBytes: number; headBytes: number }

export const ORACLE_BENCH_MODELS: OracleBenchModel[] = [
  // 7B-class at ~8 bits: 32 layers of ~200 MB, embeddings and head ~250 MB each.
  { name: '7b', numLayers: 32, layerBytes: 200e6, embedBytes: 250e6, headBytes: 250e6 },
  // TinyLlama-1.1B in float16: 22 layers of 88 MB, embeddings and head 131 MB each.
  { name: '1.1b', numLayers: 22, layerBytes: 88e6, embedBytes: 131e6, headBytes: 131e6 },
  // 70B-class in float16 (137 GB): no agent holds it alone, so every pipeline spans several nodes.
  { name: '70b', numLayers: 80, layerBytes: 1.71e9, embedBytes: 1.05e9, headBytes: 1.05e9 },
]

export type OracleBenchOptions = {
  /** Distinct agents (memory 2–80 GB, score 1–100). @default 1000 */
  agents?: number
  /** World events (joins, leaves, failures). @default 10 × agents */
  events?: number
  /** @default 1 */
  seed?: number
  /** @default 2 */
  replicas?: number
  /** World events between a silent failure and the Oracle dropping the node. @default 5 */
  detectAfter?: number
  models?: OracleBenchModel[]
  /** Assignment modes to simulate, side by side: 'spare' (agents beyond `replicas` chains idle) and 'grow' (the Oracle's: every agent that can serve does). @default ['spare', 'grow'] */
  modes?: OracleBenchMode[]
}

export type OracleBenchMode = 'spare' | 'grow'

type Stats = { mean: number; p50: number; p99: number; max: number }

export type OracleBenchRow = {
  model: string
  mode: OracleBenchMode
  numLayers: number
  /** Oracle decisions (joins, leaves, detected failures). */
  decisions: number
  /** First world event after which the Oracle's plan had `replicas` whole pipelines; metrics below start there. */
  warmupEvents: number
  /** Per world event, the fewest copies of any layer on nodes truly alive: lowest and mean over time. */
  copies: { min: number; mean: number }
  /** Share of world events with a route over nodes truly alive. */
  coveredPct: number
  /** Share of world events with every layer on ≥ 2 alive nodes. */
  twoCopiesPct: number
  /** Share of world events where a route survives the loss of any one more node. */
  survivesOneLossPct: number
  /** Layers newly loaded per Oracle decision. */
  moved: Stats
  /** Of those, layers loaded by agents that already held a range (reshuffles; a newcomer's first range is not one). */
  reshuffled: Stats
  /** Wall time of one `assignLayers` call, ms. */
  decideMs: Stats
  /** CPU time (this process, user + system) of one `assignLayers` call, ms: less swayed than wall time by other load on the machine. */
  decideCpuMs: Stats
  replans: number
  /** Mean agents online (Oracle's view) and mean serving a range. */
  online: number
  serving: number
  /** Mean share of online agents holding a range, %. */
  servingPct: number
  /** Mean share of online agents whose range some route over [0, L) can go through, %. */
  routablePct: number
  /** Mean whole, node-disjoint pipelines. */
  pipelines: number
  /** One decision for all agents at once from nothing, ms. */
  coldMs: number
}

export type OracleBenchReport = { bench: 'oracle'; agents: number; events: number; seed: number; replicas: number; detectAfter: number; rows: OracleBenchRow[] }

/** mulberry32: small, seeded, good enough for a simulation. */
function rng(seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

function stats(values: number[]): Stats {
  if (values.length === 0) return { mean: 0, p50: 0, p99: 0, max: 0 }
  const s = [...values].sort((a, b) => a - b)
  const at = (q: number) => s[Math.min(s.length - 1, Math.floor(q * s.length))]!
  return { mean: s.reduce((a, b) => a + b, 0) / s.length, p50: at(0.5), p99: at(0.99), max: s.at(-1)! }
}

type Agent = { id: string; memoryBytes: number; score: number }
type WorldEvent = { kind: 'join' | 'leave' | 'fail'; agent: number }

/**
 * The same world for every model: agents go online (pJoin = offline / (offline + online / 4),
 * settling near 80% online), then leave gracefully or fail silently, half each.
 */
function world(agents: number, events: number, seed: number): { agents: Agent[]; events: WorldEvent[] } {
  const rand = rng(seed)
  const pool: Agent[] = Array.from({ length: agents }, (_, i) => ({
    id: `agent${i}`,
    memoryBytes: Math.floor(2e9 + rand() * 78e9),
    score: 1 + Math.floor(rand() * 100),
  }))
  const offline = pool.map((_, i) => i)
  const online: number[] = []
  const list: WorldEvent[] = []
  const take = (from: number[]) => {
    const k = Math.floor(rand() * from.length)
    const v = from[k]!
    from[k] = from.at(-1)!
    from.pop()
    return v
  }
  for (let t = 0; t < events; t++) {
    const join = offline.length > 0 && (online.length === 0 || rand() < offline.length / (offline.length + online.length / 4))
    if (join) {
      const a = take(offline)
      online.push(a)
      list.push({ kind: 'join', agent: a })
    } else {
      const a = take(online)
      offline.push(a)
      list.push({ kind: rand() < 0.5 ? 'leave' : 'fail', agent: a })
    }
  }
  return { agents: pool, events: list }
}

const peersOf = (ranges: Iterable<[string, LayerRange]>): PeerShard[] => [...ranges].map(([peerId, r]) => ({ peerId, multiaddrs: [], ...r }))
const routes = (peers: PeerShard[], L: number, exclude?: Set<string>) => {
  try {
    planRoute(peers, L, exclude)
    return true
  } catch {
    return false
  }
}

/** Ranges a route over [0, L) can go through: the start reached from layer 0, the end reaching L. */
function routableCount(ranges: Iterable<LayerRange>, L: number): number {
  const list = [...ranges]
  const from = new Set([0])
  for (const r of [...list].sort((a, b) => a.start - b.start)) if (from.has(r.start)) from.add(r.end)
  const to = new Set([L])
  for (const r of [...list].sort((a, b) => b.end - a.end)) if (to.has(r.end)) to.add(r.start)
  return list.filter((r) => from.has(r.start) && to.has(r.end)).length
}

const planned = (peers: PeerShard[], L: number): PeerShard[] => {
  try {
    return planRoute(peers, L)
  } catch {
    return []
  }
}

function simulate(model: OracleBenchModel, w: { agents: Agent[]; events: WorldEvent[] }, replicas: number, detectAfter: number, mode: OracleBenchMode): OracleBenchRow {
  const grow = mode === 'grow'
  const L = model.numLayers
  // The Oracle's view: registered nodes and their ranges. Truth: which of them are alive.
  const registered = new Map<string, AssignmentNode>()
  const alive = new Set<string>()
  let ranges: ReadonlyMap<string, LayerRange> = new Map()
  let chains = 0
  const pendingDrops = new Map<number, string[]>()
  const moved: number[] = []
  const reshuffled: number[] = []
  const decideMs: number[] = []
  const decideCpuMs: number[] = []
  let replans = 0
  let clock = 0
  const decide = () => {
    const c0 = process.cpuUsage()
    const t0 = performance.now()
    const r = assignLayers({ ...model, nodes: [...registered.values()], current: ranges, replicas, grow })
    decideMs.push(performance.now() - t0)
    const c = process.cpuUsage(c0)
    decideCpuMs.push((c.user + c.system) / 1000)
    moved.push(r.moved)
    let re = 0
    for (const [id, x] of r.ranges) {
      const was = ranges.get(id)
      if (was) re += x.end - x.start - Math.max(0, Math.min(x.end, was.end) - Math.max(x.start, was.start))
    }
    reshuffled.push(re)
    if (r.replanned) replans++
    ranges = r.ranges
    chains = r.chains!.length
  }
  let warmup = -1
  const minCopies: number[] = []
  let covered = 0
  let two = 0
  let survives = 0
  let onlineSum = 0
  let servingSum = 0
  let servingShare = 0
  let routableShare = 0
  let pipelineSum = 0
  w.events.forEach((ev, t) => {
    const agent = w.agents[ev.agent]!
    if (ev.kind === 'join') {
      registered.set(agent.id, { id: agent.id, memoryBytes: agent.memoryBytes, score: agent.score, joinedAt: ++clock })
      alive.add(agent.id)
      decide()
    } else if (ev.kind === 'leave') {
      registered.delete(agent.id)
      alive.delete(agent.id)
      decide()
    } else {
      alive.delete(agent.id)
      const due = t + detectAfter
      pendingDrops.set(due, [...(pendingDrops.get(due) ?? []), agent.id])
    }
    for (const id of pendingDrops.get(t) ?? []) {
      registered.delete(id)
      decide()
    }
    pendingDrops.delete(t)
    if (warmup < 0 && chains >= replicas) warmup = t
    if (warmup < 0) return
    const live = [...ranges].filter(([id]) => alive.has(id))
    const copies = coverageOf(new Map(live), L)
    const min = Math.min(...copies)
    minCopies.push(min)
    const peers = peersOf(live)
    const route = planned(peers, L)
    if (route.length > 0) covered++
    if (min >= 2) two++
    // Losing a node off the planned route leaves that route: only the route's own nodes need a check.
    if (route.length > 0 && route.every((p) => routes(peers, L, new Set([p.peerId])))) survives++
    onlineSum += registered.size
    servingSum += ranges.size
    const routable = routableCount(ranges.values(), L)
    servingShare += registered.size ? ranges.size / registered.size : 0
    routableShare += registered.size ? routable / registered.size : 0
    pipelineSum += chains
  })
  const steps = minCopies.length
  const pct = (n: number) => (steps === 0 ? 0 : (100 * n) / steps)
  const everyone = w.agents.map((a, i) => ({ id: a.id, memoryBytes: a.memoryBytes, score: a.score, joinedAt: i }))
  const t0 = performance.now()
  assignLayers({ ...model, nodes: everyone, current: new Map(), replicas, grow })
  const coldMs = performance.now() - t0
  return {
    model: model.name,
    mode,
    numLayers: L,
    decisions: moved.length,
    warmupEvents: warmup,
    copies: { min: steps ? Math.min(...minCopies) : 0, mean: steps ? minCopies.reduce((a, b) => a + b, 0) / steps : 0 },
    coveredPct: pct(covered),
    twoCopiesPct: pct(two),
    survivesOneLossPct: pct(survives),
    moved: stats(moved),
    reshuffled: stats(reshuffled),
    decideMs: stats(decideMs),
    decideCpuMs: stats(decideCpuMs),
    replans,
    online: steps ? onlineSum / steps : 0,
    serving: steps ? servingSum / steps : 0,
    servingPct: steps ? (100 * servingShare) / steps : 0,
    routablePct: steps ? (100 * routableShare) / steps : 0,
    pipelines: steps ? pipelineSum / steps : 0,
    coldMs,
  }
}

export function runOracleBench(options: OracleBenchOptions = {}): OracleBenchReport {
  const agents = options.agents ?? 1000
  const events = options.events ?? agents * 10
  const seed = options.seed ?? 1
  const replicas = options.replicas ?? 2
  const detectAfter = options.detectAfter ?? 5
  const w = world(agents, events, seed)
  const modes = options.modes ?? ['spare', 'grow']
  const rows = (options.models ?? ORACLE_BENCH_MODELS).flatMap((m) => modes.map((mode) => simulate(m, w, replicas, detectAfter, mode)))
  return { bench: 'oracle', agents, events, seed, replicas, detectAfter, rows }
}

export function formatOracleTable(report: OracleBenchReport): string {
  const f = (n: number, d = 2) => n.toFixed(d)
  const head = ['model', 'mode', 'L', 'decisions', 'warm-up', 'copies min|mean', 'covered %', '≥2 copies %', '1-loss safe %', 'moved mean|p50|p99|max', 'reshuffled mean|p99|max', 'decide ms mean|p99|max', 'decide cpu ms mean|p50|p99', 'replans', 'online|serving', 'serving %', 'routable %', 'pipelines', 'cold ms']
  const body = report.rows.map((r) => [
    r.model,
    r.mode,
    String(r.numLayers),
    String(r.decisions),
    String(r.warmupEvents),
    `${r.copies.min}|${f(r.copies.mean)}`,
    f(r.coveredPct),
    f(r.twoCopiesPct),
    f(r.survivesOneLossPct),
    `${f(r.moved.mean)}|${r.moved.p50}|${r.moved.p99}|${r.moved.max}`,
    `${f(r.reshuffled.mean)}|${r.reshuffled.p99}|${r.reshuffled.max}`,
    `${f(r.decideMs.mean, 3)}|${f(r.decideMs.p99, 3)}|${f(r.decideMs.max, 3)}`,
    `${f(r.decideCpuMs.mean, 2)}|${f(r.decideCpuMs.p50, 2)}|${f(r.decideCpuMs.p99, 2)}`,
    String(r.replans),
    `${f(r.online, 0)}|${f(r.serving, 1)}`,
    f(r.servingPct, 1),
    f(r.routablePct, 1),
    f(r.pipelines, 1),
    f(r.coldMs, 1),
  ])
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((b) => b[i]!.length)))
  const line = (cells: string[]) => cells.map((c, i) => c.padEnd(widths[i]!)).join('  ')
  const note =
    `${report.agents} agents (2–80 GB, score 1–100), ${report.events} world events (seed ${report.seed}), replicas ${report.replicas}; ` +
    `failures noticed ${report.detectAfter} events late. Coverage columns count world events after warm-up, on nodes truly alive. ` +
    `Modes: spare = agents beyond the replicas' chains idle; grow = every agent that can serve does (the Oracle's). ` +
    `serving % = online agents holding a range; routable % = those a route over [0, L) can go through.`
  return [note, line(head), line(widths.map((w) => '-'.repeat(w))), ...body.map(line)].join('\n')
}
