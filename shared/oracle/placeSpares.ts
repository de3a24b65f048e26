import type { LayerRange } from './assignLayersTypes.ts'

/** A node without a range, as `placeSpares` sees it. */
export type SpareNode = {
  id: string
  /** Share of work (benchmark score, or memory when no score is known). */
  weight: number
  /** Layers it can hold in the middle, with layer 0, with layer L-1, with both. */
  mid: number
  first: number
  last: number
  both: number
  /** Place it even where only the end of its range meets a route (Plumise agents). */
  mustServe: boolean
}

/**
 * Ranges for nodes that no whole chain has room for, in the spirit of Petals' block selection: each
 * takes the stretch whose weakest layer has the least throughput behind it, among the stretches it
 * can hold whose start a route reaches from layer 0 and whose end reaches layer L from (cut points
 * of the ranges held), so the route planner can send requests through it at once. A range counts
 * `weight / length` of throughput on each of its layers. Nodes are placed in the given order (the
 * caller passes fastest first); each placement is seen by the next.
 *
 * A `mustServe` node with no such stretch still gets one that ends where a route goes on (a copy of
 * a chain's tail at worst): an upstream Plumise agent forwards to the node starting at its end.
 * Others stay without a range: a range no route can use would only cost them memory.
 */
export function placeSpares(numLayers: number, ranges: ReadonlyMap<string, LayerRange>, spares: SpareNode[], weightOf: (id: string) => number): Map<string, LayerRange> {
  const L = numLayers
  if (spares.length === 0) return new Map()
  const held: Array<LayerRange & { weight: number }> = []
  for (const [id, r] of ranges) held.push({ ...r, weight: weightOf(id) })
  const load = new Array<number>(L).fill(0)
  const add = (r: LayerRange, weight: number) => {
    for (let l = r.start; l < r.end; l++) load[l]! += (weight > 0 ? weight : 1) / (r.end - r.start)
  }
  for (const r of held) add(r, r.weight)
  const out = new Map<string, LayerRange>()
  let reach = reachability(held, L)
  for (const s of spares) {
    const { from, to } = reach
    const cap = (start: number, end: number) => (start === 0 ? (end === L ? s.both : s.first) : end === L ? s.last : s.mid)
    let best: { r: LayerRange; weakest: number } | undefined
    const consider = (start: number, end: number) => {
      if (end - start > cap(start, end) || end <= start) return
      let weakest = Infinity
      for (let l = start; l < end; l++) weakest = Math.min(weakest, load[l]!)
      // Least throughput first; then the longer stretch (fewer hops); then the leftmost.
      if (!best || weakest < best.weakest || (weakest === best.weakest && end - start > best.r.end - best.r.start)) best = { r: { start, end }, weakest }
    }
    const cuts = [...from].sort((a, b) => a - b)
    const ends = [...to].sort((a, b) => a - b)
    for (const a of cuts) for (const b of ends) if (b > a) consider(a, b)
    if (!best && s.mustServe) {
      // Its end meets a route; its start may not (only this origin's planner would use it then).
      for (const b of ends) {
        if (b === 0) continue
        let k = Math.min(b, b === L ? s.last : s.mid)
        if (k === b && cap(0, b) < b) k = b - 1
        if (k >= 1) consider(b - k, b)
      }
      // No route anywhere yet: the stretch from layer 0 it holds, the start of the next chain.
      if (!best) consider(0, Math.min(L, s.first))
    }
    if (!best) continue
    out.set(s.id, best.r)
    held.push({ ...best.r, weight: s.weight })
    add(best.r, s.weight)
    // A range between cut points routes already reach changes no reachability; another may.
    if (!from.has(best.r.start) || !from.has(best.r.end) || !to.has(best.r.start) || !to.has(best.r.end)) reach = reachability(held, L)
  }
  return out
}

/** Cut points a route reaches from layer 0 (`from`), and those from which it reaches layer L (`to`). */
function reachability(ranges: LayerRange[], L: number): { from: Set<number>; to: Set<number> } {
  const byStart = [...ranges].sort((a, b) => a.start - b.start)
  const byEnd = [...ranges].sort((a, b) => b.end - a.end)
  const from = new Set([0])
  for (const r of byStart) if (from.has(r.start)) from.add(r.end)
  const to = new Set([L])
  for (const r of byEnd) if (to.has(r.end)) to.add(r.start)
  return { from, to }
}
