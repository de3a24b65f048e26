/**
 * Filling holes in a chain: neighbours growing into them, spare nodes holding them whole or in
 * part, and a plan from scratch built the same way. Internal to `assignLayers`.
 */

import { gapsOf, tiles } from './chainFinding.ts'
import { arrange, capOf, len, splitByWeight, type Cand, type Gap, type Seg } from './chainSizing.ts'

/**
 * Fills the hole `[g.s, g.e)` completely, or returns undefined (and changes nothing).
 * Grows `g.left` / `g.right` in place; returns the spare nodes' new pieces.
 */
export function fillWhole(g: Gap, pool: Cand[], used: Set<Cand>, L: number): Seg[] | undefined {
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
export function reach(c: Cand, holdsFirst: boolean, room: number, touchesLast: boolean, base = 0): number {
  const open = Math.max(0, capOf(c, holdsFirst, false) - base)
  if (!touchesLast) return Math.min(open, room)
  return Math.max(0, capOf(c, holdsFirst, true) - base) >= room ? room : Math.min(open, room - 1)
}

/** Fills as much of the hole as capacity allows, from the left (the next joiner continues there). */
export function fillPart(g: Gap, pool: Cand[], used: Set<Cand>, L: number): Seg[] {
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

/** One more chain from the skeleton, filling every hole from `pool`; undefined when it cannot. */
export function completeChain(skel: Seg[], pool: Cand[], L: number): { segs: Seg[]; used: Set<Cand> } | undefined {
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

export function partialChain(skel: Seg[], pool: Cand[], L: number): { segs: Seg[]; used: Set<Cand> } {
  const segs = skel.map((s) => ({ ...s }))
  const used = new Set<Cand>()
  const added: Seg[] = []
  for (const g of gapsOf(segs, L)) added.push(...fillPart(g, pool, used, L))
  return { segs: [...segs, ...added].sort((a, b) => a.start - b.start), used }
}

export type Plan = { chains: Seg[][]; partial: Seg[]; leftover: Cand[] }

/** From scratch, ignoring current ranges: chains of the fastest nodes until `target`, then a partial one. */
export function planFromScratch(usable: Cand[], target: number, L: number): Plan {
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
