/**
 * The inputs and answers of `assignLayers`, their validation, and the byte and coverage arithmetic
 * callers share with it (the Oracle sizes ranges with `rangeBytes`, tests and benches count copies
 * with `coverageOf`).
 */

/** A half-open layer range `[start, end)`. */
export type LayerRange = { start: number; end: number }

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

/** Bytes a node needs for `range`: its layers, plus the embeddings when it starts at 0 and the head when it ends at L. */
export function rangeBytes(sizes: Pick<AssignLayersInput, 'numLayers' | 'layerBytes' | 'embedBytes' | 'headBytes'>, range: LayerRange): number {
  return (range.end - range.start) * sizes.layerBytes + (range.start === 0 ? sizes.embedBytes : 0) + (range.end === sizes.numLayers ? sizes.headBytes : 0)
}

/** Input no assignment can be made for (bad sizes, duplicate ids). */
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

/** Checks sizes, replicas and nodes; returns the target number of chains (`replicas`). */
export function validateAssignLayersInput(input: AssignLayersInput): number {
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
