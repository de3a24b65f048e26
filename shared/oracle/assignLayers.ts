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

import { placeSpares } from './placeSpares.ts'
import { coverageOf, validateAssignLayersInput, type AssignLayersInput, type AssignLayersResult, type LayerRange } from './assignLayersTypes.ts'
import { byJoin, byRank, capOf, layersFit, type Cand, type Seg } from './chainSizing.ts'
import { disjointChains, skeleton, tiles } from './chainFinding.ts'
import { completeChain, partialChain, planFromScratch, type Plan } from './chainFilling.ts'

export { AssignLayersError, coverageOf, rangeBytes, type AssignLayersInput, type AssignLayersResult, type AssignmentNode, type LayerRange } from './assignLayersTypes.ts'

const isRange = (r: LayerRange | undefined): r is LayerRange => !!r && Number.isInteger(r.start) && Number.isInteger(r.end)

/** Decides which layer range each live node serves; see the top of this file for how. */
export function assignLayers(input: AssignLayersInput): AssignLayersResult {
  const target = validateAssignLayersInput(input)
  const { numLayers: L, layerBytes, embedBytes, headBytes, current } = input
  // A typed array sorts numbers natively, without a comparator call per pair (a hot spot at 1,000 nodes).
  const scores = new Float64Array(input.nodes.length)
  let scored = 0
  for (const n of input.nodes) if (n.score > 0) scores[scored++] = n.score
  const known = scores.subarray(0, scored).sort()
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
  // Fill order does not depend on current ranges: rank once per call, not once per pass.
  const ranked = cands.map((c, i) => ({ c, i })).sort((a, b) => byRank(a.c, b.c)).map((x) => x.i)

  const grow = input.grow === true
  let decision = decide(cands, ranked, current, L, target, grow)
  // Short of the target (always, when growing), a repair can leave a fragment with room that a
  // second look would grow (or trimmed layers it would take back for free); settle here so that the
  // answer is a fixed point and the next call, with nothing changed, moves nothing.
  // (An answer equal to its input is one already: the pass is deterministic.)
  for (let round = 0; round < 4 && (grow || decision.chains.length < target) && !sameRanges(decision.ranges, current); round++) {
    const next = decide(cands, ranked, decision.ranges, L, target, grow)
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

/** One pass of the algorithm from the given current ranges; `all` in join order, `ranked` its indices in fill order. */
function decide(all: Cand[], ranked: number[], current: ReadonlyMap<string, LayerRange>, L: number, target: number, grow: boolean): { ranges: Map<string, LayerRange>; chains: string[][]; replanned: boolean } {
  const cands = all.map((c): Cand => {
    const r = current.get(c.id)
    const valid = isRange(r) && r.start >= 0 && r.start < r.end && r.end <= L && r.end - r.start <= capOf(c, r.start === 0, r.end === L)
    // Fields spelled out, not spread: this runs for every node twice a decision.
    return { id: c.id, joinedAt: c.joinedAt, mustServe: c.mustServe, weight: c.weight, mid: c.mid, first: c.first, last: c.last, both: c.both, kept: valid ? { start: r.start, end: r.end } : undefined }
  })
  const usable: Cand[] = []
  for (const i of ranked) if (cands[i]!.mid >= 1) usable.push(cands[i]!)
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
    if (plan.chains.length >= target && all.some((c) => c.mustServe)) {
      const inChain = new Set<string>()
      for (const chain of plan.chains) for (const s of chain) inChain.add(s.c.id)
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
  const inChain = new Set<Cand>()
  for (const chain of chains) for (const s of chain) inChain.add(s.c)
  // A kept range fits its node, so every kept node is usable: filtering `usable` keeps fill order.
  let frags = usable.filter((c) => c.kept && !inChain.has(c))
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
