/**
 * How `assignLayers` sees a node: what it can hold at either end of the model, how it ranks, and how
 * a stretch of layers is shared out among the nodes filling it. Internal to `assignLayers`.
 */

import type { LayerRange } from './assignLayersTypes.ts'

/** A node as the planner sees it. */
export type Cand = {
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
export type Seg = { c: Cand; start: number; end: number }

/** A hole in a chain, between the fragment ending at `s` (left) and the one starting at `e` (right). */
export type Gap = { s: number; e: number; left?: Seg; right?: Seg }

export const byJoin = (a: Cand, b: Cand) => a.joinedAt - b.joinedAt || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0)
/** Fill order: fastest first, then the one holding more, then join order. */
export const byRank = (a: Cand, b: Cand) => b.weight - a.weight || b.mid - a.mid || byJoin(a, b)

/** Whole layers that fit in `memory` after `extra` bytes, exact for byte counts (no float overshoot). */
export function layersFit(memory: number, extra: number, layerBytes: number): number {
  let k = Math.floor((memory - extra) / layerBytes)
  if (!(k > 0)) return 0
  while (k > 0 && k * layerBytes + extra > memory) k--
  return k
}

export const capOf = (c: Cand, holdsFirst: boolean, holdsLast: boolean): number =>
  holdsFirst ? (holdsLast ? c.both : c.first) : holdsLast ? c.last : c.mid

export const len = (s: Seg) => s.end - s.start

/**
 * Integer shares of `need` layers, each within `[min, max]`, so that every item's total load
 * (`base` + share) is as close as possible to proportional to its weight (water-filling).
 * Requires Σmin ≤ need ≤ Σmax.
 */
export function splitByWeight(need: number, items: { base: number; min: number; max: number; weight: number }[]): number[] {
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
export function arrange(members: Cand[], needFirst: boolean, needLast: boolean): { order: Cand[]; caps: number[]; total: number } | undefined {
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

