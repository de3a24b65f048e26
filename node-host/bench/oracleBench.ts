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
}

type Stats = { mean: number; p50: number; p99: number; max: number }

export type OracleBenchRow = {
  model: string
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
  /** Wall time of one `assignLayers` call, ms. */
  decideMs: Stats
  replans: number
  /** Mean agents online (Oracle's view) and mean serving a range. */
  online: number
  serving: number
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

function simulate(model: OracleBenchModel, w: { agents: Agent[]; events: WorldEvent[] }, replicas: number, detectAfter: number): OracleBenchRow {
  const L = model.numLayers
  // The Oracle's view: registered nodes and their ranges. Truth: which of them are alive.
  const registered = new Map<string, AssignmentNode>()
  const alive = new Set<string>()
  let ranges: ReadonlyMap<string, LayerRange> = new Map()
  let chains = 0
  const pendingDrops = new Map<number, string[]>()
  const moved: number[] = []
  const decideMs: number[] = []
  let replans = 0
  let clock = 0
  const decide = () => {
    const t0 = performance.now()
    const r = assignLayers({ ...model, nodes: [...registered.values()], current: ranges, replicas })
    decideMs.push(performance.now() - t0)
    moved.push(r.moved)
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
    if (routes(peers, L)) covered++
    if (min >= 2) two++
    if (min >= 1 && live.every(([id]) => routes(peers, L, new Set([id])))) survives++
    onlineSum += registered.size
    servingSum += ranges.size
  })
  const steps = minCopies.length
  const pct = (n: number) => (steps === 0 ? 0 : (100 * n) / steps)
  const everyone = w.agents.map((a, i) => ({ id: a.id, memoryBytes: a.memoryBytes, score: a.score, joinedAt: i }))
  const t0 = performance.now()
  assignLayers({ ...model, nodes: everyone, current: new Map(), replicas })
  const coldMs = performance.now() - t0
  return {
    model: model.name,
    numLayers: L,
    decisions: moved.length,
    warmupEvents: warmup,
    copies: { min: steps ? Math.min(...minCopies) : 0, mean: steps ? minCopies.reduce((a, b) => a + b, 0) / steps : 0 },
    coveredPct: pct(covered),
    twoCopiesPct: pct(two),
    survivesOneLossPct: pct(survives),
    moved: stats(moved),
    decideMs: stats(decideMs),
    replans,
    online: steps ? onlineSum / steps : 0,
    serving: steps ? servingSum / steps : 0,
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
  const rows = (options.models ?? ORACLE_BENCH_MODELS).map((m) => simulate(m, w, replicas, detectAfter))
  return { bench: 'oracle', agents, events, seed, replicas, detectAfter, rows }
}

export function formatOracleTable(report: OracleBenchReport): string {
  const f = (n: number, d = 2) => n.toFixed(d)
  const head = ['model', 'L', 'decisions', 'warm-up', 'copies min|mean', 'covered %', '≥2 copies %', '1-loss safe %', 'moved mean|p50|p99|max', 'decide ms mean|p99|max', 'replans', 'online|serving', 'cold ms']
  const body = report.rows.map((r) => [
    r.model,
    String(r.numLayers),
    String(r.decisions),
    String(r.warmupEvents),
    `${r.copies.min}|${f(r.copies.mean)}`,
    f(r.coveredPct),
    f(r.twoCopiesPct),
    f(r.survivesOneLossPct),
    `${f(r.moved.mean)}|${r.moved.p50}|${r.moved.p99}|${r.moved.max}`,
    `${f(r.decideMs.mean, 3)}|${f(r.decideMs.p99, 3)}|${f(r.decideMs.max, 3)}`,
    String(r.replans),
    `${f(r.online, 0)}|${f(r.serving, 1)}`,
    f(r.coldMs, 1),
  ])
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((b) => b[i]!.length)))
  const line = (cells: string[]) => cells.map((c, i) => c.padEnd(widths[i]!)).join('  ')
  const note =
    `${report.agents} agents (2–80 GB, score 1–100), ${report.events} world events (seed ${report.seed}), replicas ${report.replicas}; ` +
    `failures noticed ${report.detectAfter} events late. Coverage columns count world events after warm-up, on nodes truly alive.`
  return [note, line(head), line(widths.map((w) => '-'.repeat(w))), ...body.map(line)].join('\n')
}
