/**
 * Layer assignment for the Oracle: which contiguous layer range each live node of a model serves.
 *
 * Shape of the answer: node-disjoint *chains*. A chain is a list of nodes whose ranges tile
 * `[0, L)` end to start, i.e. one pipeline the route planner can walk (`planRoute` only joins a
 * peer whose `start` equals the previous `end`). `replicas` chains give every layer that many
 * copies, and since no node sits in two chains, losing any `replicas - 1` nodes still leaves a
 * whole chain. Menger's theorem says this is also necessary: ranges that survive the loss of any
 * single node always contain two node-disjoint chains, so planning chains gives up nothing.
 * Chains that happen to share cut points also cross over in `planRoute`, for free.
 *
 * Per call, cheapest first:
 * 1. Keep every current range that is still valid (in bounds, fits the node's memory), and find the
 *    most node-disjoint whole chains among them (unit-capacity max flow over layer boundaries).
 * 2. The other kept ranges are fragments. While fragments alone tile `[0, L)` (after trimming
 *    overlaps, which loads nothing) they form another chain.
 * 3. While fewer than `replicas` chains exist: lay the fragments out (fewest pieces, most kept
 *    layers) and fill each hole with, in order, the neighbouring fragments growing into it, one
 *    spare node that holds the whole hole, or several spares; only then relocate an unused fragment.
 *    Every filled layer is one a chain lacked, so a departure costs at most the layers it held.
 *    A hole that cannot be filled is filled as far as capacity goes, from the left, so that the
 *    next joiner continues the same chain (newcomers fill uncovered and under-replicated layers).
 * 4. Only when that still leaves fewer than `replicas` chains, re-plan: once with today's whole
 *    chains opened up to the same repair, once from scratch (ignoring current ranges). A re-plan
 *    is taken only if it yields more whole chains (coverage beats movement); the one moving fewer
 *    layers among equals. Short of the target the pass is repeated on its own answer until it
 *    settles, so that calling again with nothing changed moves nothing.
 *
 * Sizing: a node's capacity counts the embeddings when its range holds layer 0 and the final norm
 * and LM head when it holds layer L-1, so nothing is ever overcommitted. A chain is filled with one
 * node when one can hold it (no hops, and a chain of k nodes breaks k times as often), otherwise
 * with the fastest nodes (benchmark score; memory when no score is known) until they hold it, and
 * its layers are split in proportion to score, capped by capacity (faster nodes get more layers).
 * Without `grow`, nodes beyond `replicas` chains stay spare: they cost nothing and repair the next
 * departure. With `grow` (the Oracle's default) the capacity that joins is used: step 3 goes on past
 * `replicas` and builds every further whole chain the remaining nodes can hold (each one more
 * pipeline serving requests in parallel), the leftover nodes start the next chain from layer 0, and
 * any node still without a range gets a copy of the busiest stretch between existing cut points that
 * it can hold (`placeSpares`), so routes can use it at once. Re-plans (step 4) still only chase
 * `replicas`; chains beyond it are built incrementally, so a departure still moves at most what it held
 * (fragments of a broken chain, and the copies, fill its hole first).
 * Deterministic: the same nodes and current ranges (in any order) give the same answer.
 */

/** A half-open layer range `[start, end)`. */
export type LayerRange = { start: number; end: number }

import { placeSpares } from './placeSpares.ts'

export type AssignmentNode = {
  id: string
  /** Bytes free for weights (VRAM on GPU nodes, RAM on CPU nodes). */
  memoryBytes: number
  /** Benchmark score the agent reported (decode tokens/s of the reference benchmark); 0 when unknown. */
  score: number
  /** Join order: earlier joiners come first in the pipeline (ms timestamp or a counter). */
  joinedAt: number
  /**
   * With `grow`: give it a range that ends where a route goes on, even where no route reaches its
   * start. For Plumise agents, which cannot run with an empty range. @default false
   */
  mustServe?: boolean
}

export type AssignLayersInput = {
  /** Decoder layers of the model (from its config.json). */
  numLayers: number
  /** Bytes of one decoder layer's weights. */
  layerBytes: number
  /** Extra bytes the range holding layer 0 needs (embeddings). */
  embedBytes: number
  /** Extra bytes the range holding layer L-1 needs (final norm + LM head). */
  headBytes: number
  /** The live nodes for this model. */
  nodes: AssignmentNode[]
  /** Ranges the nodes hold now; kept where still valid. Pass an empty map for a fresh, balanced plan. */
  current: ReadonlyMap<string, LayerRange>
  /** Target copies of every layer (node-disjoint chains). @default 2 */
  replicas?: number
  /** Use every node: whole chains beyond `replicas`, then copies of stretches (see the top of the file). @default false */
  grow?: boolean
}

export type AssignLayersResult = {
  /** A node absent here gets no range (spare, or too small to hold one layer). */
  ranges: Map<string, LayerRange>
  /** Copies of each layer, index = layer. */
  copies: number[]
  /** Layers a node must newly load, summed over nodes (a node keeping its range costs 0). */
  moved: number
  /** The whole, node-disjoint chains: node ids in layer order (a pipeline order for each). */
  chains?: string[][]
  /** True when the incremental repair fell short and the plan was made from scratch. */
  replanned?: boolean
}

/** Input no assignment can be made for (bad sizes, duplicate ids). */
/** Bytes a node needs for `range`: its layers, plus the embeddings when it starts at 0 and the head when it ends at L. */
export function rangeBytes(sizes: Pick<AssignLayersInput, 'numLayers' | 'layerBytes' | 'embedBytes' | 'headBytes'>, range: LayerRange): number {
  return (range.end - range.start) * sizes.layerBytes + (range.start === 0 ? sizes.embedBytes : 0) + (range.end === sizes.numLayers ? sizes.headBytes : 0)
}

export class AssignLayersError extends Error {
  constructor(message: string) {
    super(message)
    this.name = 'AssignLayersError'
  }
}

/** Copies of each layer `[0, numLayers)` held by the given ranges (out-of-range parts ignored). */
export function coverageOf(ranges: ReadonlyMap<string, LayerRange> | Iterable<LayerRange>, numLayers: number): number[] {
  const diff = new Array<number>(numLayers + 1).fill(0)
  const list = ranges instanceof Map ? ranges.values() : (ranges as Iterable<LayerRange>)
  for (const r of list) {
    const start = Math.max(0, r.start)
    const end = Math.min(numLayers, r.end)
    if (!(start < end)) continue
    diff[start]! += 1
    diff[end]! -= 1
  }
  const copies = new Array<number>(numLayers)
  let run = 0
  for (let i = 0; i < numLayers; i++) copies[i] = run += diff[i]!
  return copies
}

/** A node as the planner sees it. */
type Cand = {
  id: string
  joinedAt: number
  mustServe: boolean
  /** Share of work: score, or the median known score when unknown, or memory when no score is known. */
  weight: number
  /** Layers it can hold in the middle, with layer 0, with layer L-1, with both. */
  mid: number
  first: number
  last: number
  both: number
  /** Its current range, when still valid. */
  kept?: LayerRange
}

/** One node's place in a chain being built. */
type Seg = { c: Cand; start: number; end: number }

/** A hole in a chain, between the fragment ending at `s` (left) and the one starting at `e` (right). */
type Gap = { s: number; e: number; left?: Seg; right?: Seg }

const byJoin = (a: Cand, b: Cand) => a.joinedAt - b.joinedAt || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0)
/** Fill order: fastest first, then the one holding more, then join order. */
const byRank = (a: Cand, b: Cand) => b.weight - a.weight || b.mid - a.mid || byJoin(a, b)

/** Whole layers that fit in `memory` after `extra` bytes, exact for byte counts (no float overshoot). */
function layersFit(memory: number, extra: number, layerBytes: number): number {
  let k = Math.floor((memory - extra) / layerBytes)
  if (!(k > 0)) return 0
  while (k > 0 && k * layerBytes + extra > memory) k--
  return k
}

const capOf = (c: Cand, holdsFirst: boolean, holdsLast: boolean): number =>
  holdsFirst ? (holdsLast ? c.both : c.first) : holdsLast ? c.last : c.mid

const len = (s: Seg) => s.end - s.start

/**
 * Integer shares of `need` layers, each within `[min, max]`, so that every item's total load
 * (`base` + share) is as close as possible to proportional to its weight (water-filling).
 * Requires Σmin ≤ need ≤ Σmax.
 */
function splitByWeight(need: number, items: { base: number; min: number; max: number; weight: number }[]): number[] {
  const allZero = items.every((it) => !(it.weight > 0))
  const w = items.map((it) => (allZero ? 1 : Math.max(0, it.weight)))
  const at = (lambda: number) => items.map((it, i) => Math.min(it.max, Math.max(it.min, lambda * w[i]! - it.base)))
  const total = (v: number[]) => v.reduce((a, b) => a + b, 0)
  let lo = 0
  let hi = 1
  while (total(at(hi)) < need && hi < 1e300) hi *= 2
  for (let i = 0; i < 200 && lo < hi; i++) {
    const m = (lo + hi) / 2
    if (m === lo || m === hi) break
    if (total(at(m)) < need) lo = m
    else hi = m
  }
  const ideal = at(hi)
  const share = ideal.map((v, i) => Math.min(items[i]!.max, Math.max(items[i]!.min, Math.floor(v + 1e-9))))
  let left = need - total(share)
  // Largest remainders get the leftover layers (smallest give them back); ties go to the earlier item.
  const order = ideal.map((v, i) => i).sort((a, b) => ideal[b]! - share[b]! - (ideal[a]! - share[a]!) || a - b)
  while (left > 0) {
    let moved = false
    for (const i of order) {
      if (left === 0) break
      if (share[i]! < items[i]!.max) (share[i]! += 1), left--, (moved = true)
    }
    if (!moved) break
  }
  while (left < 0) {
    let moved = false
    for (const i of [...order].reverse()) {
      if (left === 0) break
      if (share[i]! > items[i]!.min) (share[i]! -= 1), left++, (moved = true)
    }
    if (!moved) break
  }
  return share
}

/**
 * The order of spare nodes filling one stretch and what each can hold there: join order (earlier
 * joiners first in the pipeline) unless another choice of the stretch's first node (holding the
 * embeddings) or last node (holding the head) holds more.
 */
function arrange(members: Cand[], needFirst: boolean, needLast: boolean): { order: Cand[]; caps: number[]; total: number } | undefined {
  const k = members.length
  if (k === 0) return { order: [], caps: [], total: 0 }
  if (k === 1) {
    const cap = capOf(members[0]!, needFirst, needLast)
    return cap >= 1 ? { order: [members[0]!], caps: [cap], total: cap } : undefined
  }
  const evaluate = (order: Cand[]) => {
    const caps = order.map((c, i) => capOf(c, needFirst && i === 0, needLast && i === k - 1))
    return caps.every((x) => x >= 1) ? { order, caps, total: caps.reduce((a, b) => a + b, 0) } : undefined
  }
  const joined = [...members].sort(byJoin)
  const natural = evaluate(joined)
  if (!needFirst && !needLast) return natural
  const lossF = (c: Cand) => (!needFirst ? 0 : c.first >= 1 ? c.mid - c.first : Infinity)
  const lossL = (c: Cand) => (!needLast ? 0 : c.last >= 1 ? c.mid - c.last : Infinity)
  // Best first with the best other last, or best last with the best other first: one is optimal.
  const pick = (loss: (c: Cand) => number, except: Cand | undefined, latest: boolean) => {
    let best: Cand | undefined
    for (const c of latest ? [...joined].reverse() : joined) if (c !== except && (!best || loss(c) < loss(best))) best = c
    return best!
  }
  const f1 = pick(lossF, undefined, false)
  const l1 = pick(lossL, f1, true)
  const l2 = pick(lossL, undefined, true)
  const f2 = pick(lossF, l2, false)
  const [f, l] = lossF(f1) + lossL(l1) <= lossF(f2) + lossL(l2) ? [f1, l1] : [f2, l2]
  const chosen = evaluate([f, ...joined.filter((c) => c !== f && c !== l), l])
  if (!natural) return chosen
  return chosen && chosen.total > natural.total ? chosen : natural
}

/** The most node-disjoint whole chains among kept ranges: unit-capacity max flow from boundary 0 to L. */
function disjointChains(kept: Cand[], L: number): Seg[][] {
  const edges = kept
    .map((c) => ({ c, from: c.kept!.start, to: c.kept!.end, used: false, taken: false }))
    .sort((a, b) => a.from - b.from || a.to - b.to || byJoin(a.c, b.c))
  const out: number[][] = Array.from({ length: L + 1 }, () => [])
  const into: number[][] = Array.from({ length: L + 1 }, () => [])
  edges.forEach((e, i) => (out[e.from]!.push(i), into[e.to]!.push(i)))
  // A greedy start: depth-first paths over unused edges, each boundary's edges tried once (ranges
  // only go forward, so a boundary that led nowhere stays a dead end). With hundreds of whole chains
  // kept (a grown network) this finds nearly all of them in one sweep; the augmenting search below
  // then only corrects what greed got wrong, instead of running once per chain.
  const next = new Int32Array(L + 1)
  const stack: number[] = []
  for (let v = 0; ; ) {
    if (v === L) {
      for (const i of stack) edges[i]!.used = true
      stack.length = 0
      v = 0
      continue
    }
    const list = out[v]!
    if (next[v]! < list.length) {
      const i = list[next[v]!]!
      next[v]!++
      stack.push(i)
      v = edges[i]!.to
    } else if (stack.length === 0) break
    else v = edges[stack.pop()!]!.from
  }
  const via = new Int32Array(L + 1)
  const seen = new Uint8Array(L + 1)
  const queue = new Int32Array(L + 1)
  for (;;) {
    seen.fill(0)
    seen[0] = 1
    let head = 0
    let tail = 0
    queue[tail++] = 0
    while (head < tail && !seen[L]) {
      const v = queue[head++]!
      for (const i of out[v]!) {
        const e = edges[i]!
        if (!e.used && !seen[e.to]) (seen[e.to] = 1), (via[e.to] = i), (queue[tail++] = e.to)
      }
      for (const i of into[v]!) {
        const e = edges[i]!
        if (e.used && !seen[e.from]) (seen[e.from] = 1), (via[e.from] = i), (queue[tail++] = e.from)
      }
    }
    if (!seen[L]) break
    for (let v = L; v !== 0; ) {
      const e = edges[via[v]!]!
      if (e.to === v) (e.used = true), (v = e.from)
      else (e.used = false), (v = e.to)
    }
  }
  const chains: Seg[][] = []
  // Each boundary's edges are handed out in order, once each.
  next.fill(0)
  const take = (v: number) => {
    const list = out[v]!
    while (!edges[list[next[v]!]!]!.used) next[v]!++
    return list[next[v]!++]!
  }
  for (const first of out[0]!) {
    if (!edges[first]!.used || edges[first]!.taken) continue
    const chain: Seg[] = []
    let v = 0
    while (v < L) {
      const i = v === 0 ? first : take(v)
      const e = edges[i]!
      e.taken = true
      chain.push({ c: e.c, start: e.from, end: e.to })
      v = e.to
    }
    chains.push(chain)
  }
  return chains
}

/**
 * Fragments laid out as one chain's skeleton: at each boundary the fragment reaching furthest
 * (fewest pieces, every fragment-covered layer kept); overlaps are trimmed off its start.
 */
function skeleton(frags: Cand[], L: number): { segs: Seg[]; rest: Cand[] } {
  const byStart = [...frags].sort((a, b) => a.kept!.start - b.kept!.start || byJoin(a, b))
  const active: Cand[] = []
  const segs: Seg[] = []
  const chosen = new Set<Cand>()
  let x = 0
  let i = 0
  while (x < L) {
    while (i < byStart.length && byStart[i]!.kept!.start <= x) active.push(byStart[i++]!)
    let best: Cand | undefined
    for (const c of active) {
      if (c.kept!.end <= x) continue
      // Furthest end; then the least trimmed (it keeps its layers); then join order.
      if (!best || c.kept!.end > best.kept!.end || (c.kept!.end === best.kept!.end && c.kept!.start > best.kept!.start)) best = c
    }
    if (best) {
      segs.push({ c: best, start: x, end: best.kept!.end })
      chosen.add(best)
      active.splice(active.indexOf(best), 1)
      x = best.kept!.end
    } else if (i < byStart.length) x = byStart[i]!.kept!.start
    else break
  }
  return { segs, rest: frags.filter((c) => !chosen.has(c)) }
}

function gapsOf(segs: Seg[], L: number): Gap[] {
  const gaps: Gap[] = []
  let at = 0
  let prev: Seg | undefined
  for (const s of segs) {
    if (s.start > at) gaps.push({ s: at, e: s.start, left: prev, right: s })
    at = s.end
    prev = s
  }
  if (at < L) gaps.push({ s: at, e: L, left: prev })
  return gaps
}

/**
 * Fills the hole `[g.s, g.e)` completely, or returns undefined (and changes nothing).
 * Grows `g.left` / `g.right` in place; returns the spare nodes' new pieces.
 */
function fillWhole(g: Gap, pool: Cand[], used: Set<Cand>, L: number): Seg[] | undefined {
  const need = g.e - g.s
  const { left, right } = g
  // 1. The neighbours grow into it: no new node, no new hop.
  if (left && right) {
    const lh = Math.max(0, capOf(left.c, left.start === 0, false) - len(left))
    const rh = Math.max(0, capOf(right.c, false, right.end === L) - len(right))
    if (lh + rh >= need) {
      const [x, y] = splitByWeight(need, [
        { base: len(left), min: 0, max: lh, weight: left.c.weight },
        { base: len(right), min: 0, max: rh, weight: right.c.weight },
      ])
      left.end += x!
      right.start -= y!
      return []
    }
  } else if (left) {
    if (capOf(left.c, left.start === 0, true) - len(left) >= need) return (left.end = g.e), []
  } else if (right) {
    if (capOf(right.c, true, right.end === L) - len(right) >= need) return (right.start = g.s), []
  }
  const holdsFirst = g.s === 0
  const holdsLast = g.e === L
  // 2. One spare holds all of it (the fastest that does).
  for (const c of pool) if (!used.has(c) && capOf(c, holdsFirst, holdsLast) >= need) return used.add(c), [{ c, start: g.s, end: g.e }]
  // 3. Several spares, fastest first, helped by whatever room the neighbours have.
  const lh = left ? Math.max(0, capOf(left.c, left.start === 0, false) - len(left)) : 0
  const rh = right ? Math.max(0, capOf(right.c, false, right.end === L) - len(right)) : 0
  const free = pool.filter((c) => !used.has(c))
  if (free.reduce((a, c) => a + c.mid, 0) + lh + rh < need) return undefined
  const enough = (m: Cand[]) => {
    const a = arrange(m, holdsFirst, holdsLast)
    return a && a.total + lh + rh >= need ? a : undefined
  }
  let members: Cand[] = []
  let plan: ReturnType<typeof enough>
  for (const c of free) {
    members.push(c)
    if ((plan = enough(members))) break
  }
  if (!plan) return undefined
  // Drop the slowest members the stretch does not need; keep dropping past one that it needs only
  // while there are more members than layers (each must hold one).
  for (let i = members.length - 1; i >= 0 && members.length > 1; i--) {
    const without = members.filter((_, j) => j !== i)
    const fewer = enough(without)
    if (fewer) (members = without), (plan = fewer)
    else if (members.length <= need) break
  }
  if (members.length > need) return undefined
  const items = [
    ...(left ? [{ base: len(left), min: 0, max: lh, weight: left.c.weight }] : []),
    ...plan.order.map((c, i) => ({ base: 0, min: 1, max: plan!.caps[i]!, weight: c.weight })),
    ...(right ? [{ base: len(right), min: 0, max: rh, weight: right.c.weight }] : []),
  ]
  const share = splitByWeight(need, items)
  let k = 0
  let pos = g.s
  if (left) (left.end += share[k]!), (pos += share[k++]!)
  const segs: Seg[] = []
  for (const c of plan.order) {
    segs.push({ c, start: pos, end: pos + share[k]! })
    pos += share[k++]!
    used.add(c)
  }
  if (right) right.start = pos
  return segs
}

/** Layers a node can take from `pos` within a stretch of `room` layers, the last of which may be L-1. */
function reach(c: Cand, holdsFirst: boolean, room: number, touchesLast: boolean, base = 0): number {
  const open = Math.max(0, capOf(c, holdsFirst, false) - base)
  if (!touchesLast) return Math.min(open, room)
  return Math.max(0, capOf(c, holdsFirst, true) - base) >= room ? room : Math.min(open, room - 1)
}

/** Fills as much of the hole as capacity allows, from the left (the next joiner continues there). */
function fillPart(g: Gap, pool: Cand[], used: Set<Cand>, L: number): Seg[] {
  const { left, right } = g
  const touchesLast = g.e === L && !right
  let pos = g.s
  if (left) {
    const x = reach(left.c, left.start === 0, g.e - pos, touchesLast, len(left))
    left.end += x
    pos += x
  }
  const segs: Seg[] = []
  // Again while it helps: a node unable to hold layer 0 may still take the next stretch.
  for (let progress = true; progress && pos < g.e; ) {
    progress = false
    for (const c of pool) {
      if (pos >= g.e) break
      if (used.has(c)) continue
      const x = reach(c, pos === 0, g.e - pos, touchesLast)
      if (x < 1) continue
      segs.push({ c, start: pos, end: pos + x })
      used.add(c)
      pos += x
      progress = true
    }
  }
  if (pos < g.e && right) {
    const room = g.e - pos
    const open = Math.max(0, capOf(right.c, false, right.end === L) - len(right))
    const y = pos === 0 && capOf(right.c, true, right.end === L) - len(right) >= room ? room : Math.min(open, pos === 0 ? room - 1 : room)
    right.start -= y
  }
  return segs
}

const tiles = (segs: Seg[], L: number) => segs.length > 0 && segs[0]!.start === 0 && segs.at(-1)!.end === L && segs.every((s, i) => i === 0 || segs[i - 1]!.end === s.start)

/** One more chain from the skeleton, filling every hole from `pool`; undefined when it cannot. */
function completeChain(skel: Seg[], pool: Cand[], L: number): { segs: Seg[]; used: Set<Cand> } | undefined {
  const segs = skel.map((s) => ({ ...s }))
  const used = new Set<Cand>()
  const added: Seg[] = []
  for (const g of gapsOf(segs, L)) {
    const filled = fillWhole(g, pool, used, L)
    if (!filled) return undefined
    added.push(...filled)
  }
  return { segs: [...segs, ...added].sort((a, b) => a.start - b.start), used }
}

function partialChain(skel: Seg[], pool: Cand[], L: number): { segs: Seg[]; used: Set<Cand> } {
  const segs = skel.map((s) => ({ ...s }))
  const used = new Set<Cand>()
  const added: Seg[] = []
  for (const g of gapsOf(segs, L)) added.push(...fillPart(g, pool, used, L))
  return { segs: [...segs, ...added].sort((a, b) => a.start - b.start), used }
}

type Plan = { chains: Seg[][]; partial: Seg[]; leftover: Cand[] }

/** From scratch, ignoring current ranges: chains of the fastest nodes until `target`, then a partial one. */
function planFromScratch(usable: Cand[], target: number, L: number): Plan {
  const used = new Set<Cand>()
  const chains: Seg[][] = []
  while (chains.length < target) {
    const segs = fillWhole({ s: 0, e: L }, usable, used, L)
    if (!segs) break
    chains.push(segs)
  }
  let partial: Seg[] = []
  if (chains.length < target) {
    partial = fillPart({ s: 0, e: L }, usable, used, L)
    if (tiles(partial, L)) chains.push(partial), (partial = [])
  }
  return { chains, partial, leftover: [] }
}

function validate(input: AssignLayersInput): number {
  const { numLayers, layerBytes, embedBytes, headBytes, nodes } = input
  const replicas = input.replicas ?? 2
  if (!Number.isInteger(numLayers) || numLayers < 1) throw new AssignLayersError(`numLayers must be an integer >= 1, got ${numLayers}`)
  if (!Number.isFinite(layerBytes) || layerBytes <= 0) throw new AssignLayersError(`layerBytes must be a positive number, got ${layerBytes}`)
  if (!Number.isFinite(embedBytes) || embedBytes < 0) throw new AssignLayersError(`embedBytes must be a number >= 0, got ${embedBytes}`)
  if (!Number.isFinite(headBytes) || headBytes < 0) throw new AssignLayersError(`headBytes must be a number >= 0, got ${headBytes}`)
  if (!Number.isInteger(replicas) || replicas < 1) throw new AssignLayersError(`replicas must be an integer >= 1, got ${replicas}`)
  const ids = new Set<string>()
  for (const n of nodes) {
    if (typeof n.id !== 'string' || n.id === '') throw new AssignLayersError('every node needs a non-empty id')
    if (ids.has(n.id)) throw new AssignLayersError(`node ${n.id} is listed twice`)
    ids.add(n.id)
    if (!Number.isFinite(n.memoryBytes) || n.memoryBytes < 0) throw new AssignLayersError(`node ${n.id}: memoryBytes must be a number >= 0, got ${n.memoryBytes}`)
    if (!Number.isFinite(n.score) || n.score < 0) throw new AssignLayersError(`node ${n.id}: score must be a number >= 0, got ${n.score}`)
    if (!Number.isFinite(n.joinedAt)) throw new AssignLayersError(`node ${n.id}: joinedAt must be a finite number, got ${n.joinedAt}`)
  }
  return replicas
}

const isRange = (r: LayerRange | undefined): r is LayerRange => !!r && Number.isInteger(r.start) && Number.isInteger(r.end)

/** Decides which layer range each live node serves; see the top of this file for how. */
export function assignLayers(input: AssignLayersInput): AssignLayersResult {
  const target = validate(input)
  const { numLayers: L, layerBytes, embedBytes, headBytes, current } = input
  const known = input.nodes.filter((n) => n.score > 0).map((n) => n.score).sort((a, b) => a - b)
  const median = known.length === 0 ? 0 : known.length % 2 ? known[known.length >> 1]! : (known[known.length / 2 - 1]! + known[known.length / 2]!) / 2
  const cands: Cand[] = input.nodes
    .map((n): Cand => ({
      id: n.id,
      joinedAt: n.joinedAt,
      mustServe: n.mustServe === true,
      // Unknown scores count as the median known one; with no score at all, memory decides.
      weight: known.length === 0 ? n.memoryBytes : n.score > 0 ? n.score : median,
      mid: layersFit(n.memoryBytes, 0, layerBytes),
      first: layersFit(n.memoryBytes, embedBytes, layerBytes),
      last: layersFit(n.memoryBytes, headBytes, layerBytes),
      both: layersFit(n.memoryBytes, embedBytes + headBytes, layerBytes),
    }))
    .sort(byJoin)

  const grow = input.grow === true
  let decision = decide(cands, current, L, target, grow)
  // Short of the target (always, when growing), a repair can leave a fragment with room that a
  // second look would grow (or trimmed layers it would take back for free); settle here so that the
  // answer is a fixed point and the next call, with nothing changed, moves nothing.
  // (An answer equal to its input is one already: the pass is deterministic.)
  for (let round = 0; round < 4 && (grow || decision.chains.length < target) && !sameRanges(decision.ranges, current); round++) {
    const next = decide(cands, decision.ranges, L, target, grow)
    if (sameRanges(next.ranges, decision.ranges)) break
    decision = { ...next, replanned: decision.replanned || next.replanned }
  }

  let moved = 0
  for (const [id, r] of decision.ranges) {
    const was = current.get(id)
    const overlap = isRange(was) ? Math.max(0, Math.min(r.end, was.end) - Math.max(r.start, was.start)) : 0
    moved += r.end - r.start - overlap
  }
  return { ranges: decision.ranges, copies: coverageOf(decision.ranges, L), moved, chains: decision.chains, replanned: decision.replanned }
}

function sameRanges(a: ReadonlyMap<string, LayerRange>, b: ReadonlyMap<string, LayerRange>): boolean {
  if (a.size !== b.size) return false
  for (const [id, r] of a) {
    const o = b.get(id)
    if (!o || o.start !== r.start || o.end !== r.end) return false
  }
  return true
}

/** One pass of the algorithm from the given current ranges. */
function decide(all: Cand[], current: ReadonlyMap<string, LayerRange>, L: number, target: number, grow: boolean): { ranges: Map<string, LayerRange>; chains: string[][]; replanned: boolean } {
  const cands = all.map((c): Cand => {
    const r = current.get(c.id)
    const valid = isRange(r) && r.start >= 0 && r.start < r.end && r.end <= L && r.end - r.start <= capOf(c, r.start === 0, r.end === L)
    // Fields spelled out, not spread: this runs for every node twice a decision.
    return { id: c.id, joinedAt: c.joinedAt, mustServe: c.mustServe, weight: c.weight, mid: c.mid, first: c.first, last: c.last, both: c.both, kept: valid ? { start: r.start, end: r.end } : undefined }
  })
  const usable = cands.filter((c) => c.mid >= 1).sort(byRank)
  const incremental = repair(cands, usable, L, target, true, grow)
  let plan = incremental
  // 4. Re-plan only when the repair fell short of the target and a re-plan reaches more whole
  // chains: first with today's whole chains opened up to repair, then from scratch; the fewer
  // moved layers decide between re-plans that reach as many.
  if (incremental.chains.length < target) {
    const whole = (p: Plan) => Math.min(p.chains.length, target)
    for (const alt of [repair(cands, usable, L, target, false, grow), planFromScratch(usable, target, L)]) {
      if (whole(alt) > whole(plan) || (plan !== incremental && whole(alt) === whole(plan) && movedBy(alt) < movedBy(plan))) plan = alt
    }
  }
  const ranges = new Map<string, LayerRange>()
  for (const chain of plan.chains) for (const s of chain) ranges.set(s.c.id, { start: s.start, end: s.end })
  for (const s of plan.partial) ranges.set(s.c.id, { start: s.start, end: s.end })
  for (const c of plan.leftover) ranges.set(c.id, { ...c.kept! })
  if (grow) {
    // A Plumise agent outside the whole chains whose range ends where no route goes on would
    // forward to nobody (it finds its next node by the range starting at its end): once the
    // network holds its `replicas` chains it is placed like a spare instead (short of them, the
    // partial chain it is in is the one the next joiner completes).
    if (plan.chains.length >= target) {
      const inChain = new Set(plan.chains.flat().map((s) => s.c.id))
      for (const c of all) if (c.mustServe && !inChain.has(c.id) && ranges.has(c.id) && !endsOnRoute(ranges, ranges.get(c.id)!.end, L)) ranges.delete(c.id)
    }
    const spares = usable.filter((c) => !ranges.has(c.id))
    if (spares.length > 0) {
      const weight = new Map(all.map((c) => [c.id, c.weight]))
      for (const [id, r] of placeSpares(L, ranges, spares, (id) => weight.get(id) ?? 0)) ranges.set(id, r)
    }
  }
  return { ranges, chains: plan.chains.map((chain) => chain.map((s) => s.c.id)), replanned: plan !== incremental }
}

/** Whether a route goes on from cut point `at` to layer L over these ranges. */
function endsOnRoute(ranges: ReadonlyMap<string, LayerRange>, at: number, L: number): boolean {
  const to = new Set([L])
  for (const r of [...ranges.values()].sort((a, b) => b.end - a.end)) if (to.has(r.end)) to.add(r.start)
  return to.has(at)
}

/** Layers a plan makes nodes load that their kept ranges do not hold. */
function movedBy(plan: Plan): number {
  let moved = 0
  for (const s of [...plan.chains.flat(), ...plan.partial]) {
    const k = s.c.kept
    moved += s.end - s.start - (k ? Math.max(0, Math.min(s.end, k.end) - Math.max(s.start, k.start)) : 0)
  }
  return moved
}

/**
 * Steps 1-3: keep the whole chains among current ranges (when `lock`), then build chains from
 * fragments, spares and, to complete one, relocated fragments, up to the target.
 */
function repair(cands: Cand[], usable: Cand[], L: number, target: number, lock: boolean, grow: boolean): Plan {
  const kept = cands.filter((c) => c.kept)
  const chains = lock ? disjointChains(kept, L) : []
  const inChain = new Set(chains.flat().map((s) => s.c))
  let frags = kept.filter((c) => !inChain.has(c)).sort(byRank)
  let free = usable.filter((c) => !c.kept)
  let partial: Seg[] = []
  for (;;) {
    const { segs, rest } = skeleton(frags, L)
    if (segs.length > 0 && tiles(segs, L)) {
      chains.push(segs)
      frags = rest
      continue
    }
    // Growing builds chains until the nodes run out; only `replicas` of them are worth a re-plan.
    if (chains.length >= target && !grow) break
    const done = completeChain(segs, free, L) ?? completeChain(segs, [...free, ...rest], L)
    if (done) {
      chains.push(done.segs)
      free = free.filter((c) => !done.used.has(c))
      frags = rest.filter((c) => !done.used.has(c))
      continue
    }
    // Past `replicas`, the leftovers become copies of stretches routes use (`placeSpares`), not a
    // partial chain no route goes through.
    if (chains.length >= target) break
    const part = partialChain(segs, free, L)
    free = free.filter((c) => !part.used.has(c))
    frags = rest
    if (tiles(part.segs, L)) {
      chains.push(part.segs)
      continue
    }
    partial = part.segs
    break
  }
  return { chains, partial, leftover: frags }
}
