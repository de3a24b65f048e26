/**
 * Finding chains among the ranges nodes already hold: the most node-disjoint whole chains, the
 * skeleton of fragments another chain can be built on, and the holes left in it. Internal to
 * `assignLayers`.
 */

import { byJoin, type Cand, type Gap, type Seg } from './chainSizing.ts'

/** The most node-disjoint whole chains among kept ranges (given in join order): unit-capacity max flow from boundary 0 to L. */
export function disjointChains(kept: Cand[], L: number): Seg[][] {
  // The sort is stable and `kept` comes in join order, so ties stay in join order without comparing it.
  const edges = kept
    .map((c) => ({ c, from: c.kept!.start, to: c.kept!.end, used: false, taken: false }))
    .sort((a, b) => a.from - b.from || a.to - b.to)
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
export function skeleton(frags: Cand[], L: number): { segs: Seg[]; rest: Cand[] } {
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

export function gapsOf(segs: Seg[], L: number): Gap[] {
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

/** Whether the pieces tile `[0, L)` end to start (a whole chain). */
export const tiles = (segs: Seg[], L: number) => segs.length > 0 && segs[0]!.start === 0 && segs.at(-1)!.end === L && segs.every((s, i) => i === 0 || segs[i - 1]!.end === s.start)
