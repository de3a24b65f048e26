import { bloomFamily } from './bloomFamily.ts'
import { gpt2Family } from './gpt2Family.ts'
import { llamaFamily } from './llamaFamily.ts'
import type { ModelSpec } from './modelSpec.ts'
import { OnnxGraph, type OnnxArtifact } from './onnxGraph.ts'
import { readTensors, tensorInfo, type SafetensorsIndex } from './safetensors.ts'
import { CAST_TO, LOGITS_FROM, POSITION_OFFSET, ShardGraphContext, activationType, type FamilyBuilder, type LayerRange, type Int4AccuracyLevel, type ShardIO, type WeightFormat } from './shardGraph.ts'

export class LayerRangeError extends RangeError {
  readonly range: LayerRange
  readonly numLayers: number

  constructor(range: LayerRange, numLayers: number) {
    super(`layer range [${range.start}, ${range.end}) is outside [0, ${numLayers}) or empty`)
    this.range = range
    this.numLayers = numLayers
    this.name = 'LayerRangeError'
  }
}

export type BuildShardGraphParameters = {
  spec: ModelSpec
  index: SafetensorsIndex
  range: LayerRange
  /** @default 'float32' */
  weights?: WeightFormat
  /** @default 4 */
  int4AccuracyLevel?: Int4AccuracyLevel
  /**
   * Takes the weight bytes built so far before each next piece is built (they are then dropped
   * here): the builder holds two pieces' weights (the one built, the next being read), not the whole shard's. The artifact's `weights`
   * keep only the bytes after the last call.
   */
  onWeights?: (chunks: Uint8Array[]) => Promise<void>
  /** Called after each piece is read and built. */
  onProgress?: (done: number, total: number) => void
  signal?: AbortSignal
}

export type ShardGraph = OnnxArtifact & { io: ShardIO; range: LayerRange }

export function assertLayerRange(range: LayerRange, numLayers: number): void {
  const { start, end } = range
  if (!Number.isInteger(start) || !Number.isInteger(end) || start < 0 || end > numLayers || start >= end) {
    throw new LayerRangeError(range, numLayers)
  }
}

export function familyBuilder(spec: ModelSpec, index: SafetensorsIndex): FamilyBuilder {
  const has = (n: string) => index.tensors.has(n)
  switch (spec.family) {
    case 'llama':
      return llamaFamily(spec, has)
    case 'bloom':
      return bloomFamily(spec, has)
    case 'gpt2':
      return gpt2Family(spec, has)
  }
}

/**
 * Builds the ONNX model of layers `[start, end)`: the first shard embeds token ids, the last
 * applies the final norm and LM head; every shard takes the position offset and its layers'
 * past KV and returns the present KV. Reads only the tensors those layers need, one layer at a time
 * (the next while the current is built).
 */
export async function buildShardGraph(params: BuildShardGraphParameters): Promise<ShardGraph> {
  const { spec, index, range, signal } = params
  assertLayerRange(range, spec.numLayers)
  const family = familyBuilder(spec, index)
  const isFirst = range.start === 0
  const isLast = range.end === spec.numLayers
  // Fail on a missing tensor before reading anything.
  const pieces: string[][] = []
  if (isFirst) pieces.push(family.embeddingTensors())
  for (let i = range.start; i < range.end; i++) pieces.push(family.layerTensors(i))
  if (isLast) pieces.push(family.finalTensors())
  for (const names of pieces) for (const n of names) tensorInfo(index, n)

  const g = new OnnxGraph(`${spec.architecture}_${range.start}_${range.end}`)
  const H = spec.hiddenSize
  // B rows (sessions) of T positions each; each row's cached length is its position offset.
  const input = isFirst ? g.input('input_ids', 'int64', ['B', 'T']) : g.input('hidden_states', 'float32', ['B', 'T', H])
  g.input(POSITION_OFFSET, 'int64', ['B'])
  const ctx = new ShardGraphContext(g, spec, input, params.weights, params.int4AccuracyLevel)
  const act = activationType(ctx.weightFormat)
  // Hidden states and logits cross the shard's edges (and the wire) as float32 in every format.
  const toAct = (v: string) => (act === 'float32' ? v : g.op1('Cast', [v], { to: CAST_TO[act] }))
  const toFloat32 = (v: string) => (act === 'float32' ? v : g.op1('Cast', [v], { to: CAST_TO.float32 }))
  const kvHeads = spec.family === 'llama' ? spec.numKvHeads : spec.numHeads
  const layers: number[] = []
  let piece = 0
  // The next piece is read while this one is built (reading and building take about as long).
  const fetchPiece = (i: number) => {
    const p = i < pieces.length ? readTensors(index, pieces[i]!, signal) : undefined
    p?.catch(() => undefined) // awaited (and its error thrown) when its turn comes
    return p
  }
  let ahead = fetchPiece(0)
  const read = async () => {
    const current = ahead!
    piece++
    ahead = fetchPiece(piece)
    if (params.onWeights) await params.onWeights(g.takeWeights())
    const t = await current
    params.onProgress?.(piece, pieces.length)
    return t
  }
  let x = isFirst ? input : toAct(input)
  if (isFirst) x = family.embed(ctx, input, await read())
  for (let i = range.start; i < range.end; i++) {
    const cache = {
      pastKey: g.input(`past_key.${i}`, act, ['B', kvHeads, 'P', spec.headDim]),
      pastValue: g.input(`past_value.${i}`, act, ['B', kvHeads, 'P', spec.headDim]),
      presentKey: `present_key.${i}`,
      presentValue: `present_value.${i}`,
    }
    x = family.layer(ctx, i, x, await read(), cache)
    layers.push(i)
  }
  const output = isLast ? 'logits' : 'hidden_states_out'
  if (isLast) {
    const rows = g.op1('Slice', [x, g.input(LOGITS_FROM, 'int64', [1]), g.constant('int64', [1], [0x7fffffffffffffffn]), g.constant('int64', [1], [1])])
    g.output(toFloat32(family.head(ctx, rows, await read())), 'logits', 'float32', ['B', 'R', spec.vocabSize])
  } else {
    g.output(toFloat32(x), 'hidden_states_out', 'float32', ['B', 'T', H])
  }
  for (const i of layers) {
    g.output(`present_key.${i}`, `present_key.${i}`, act, ['B', kvHeads, 'S', spec.headDim])
    g.output(`present_value.${i}`, `present_value.${i}`, act, ['B', kvHeads, 'S', spec.headDim])
  }
  // GroupQueryAttention writes a row's new keys after its own past; MultiHeadAttention after the padded past.
  const presentLayout = spec.family === 'llama' ? 'packed' : 'appended'
  return { ...g.build(), range, io: { input: isFirst ? 'input_ids' : 'hidden_states', output, kvType: act, layers, kvHeads, headDim: spec.headDim, presentLayout } }
}
