import { keccak256, stringToBytes, type Hex } from 'viem'
import { familyBuilder } from '../../shared/model/buildShardGraph.ts'
import type { ModelSource } from '../../shared/model/modelSource.ts'
import { parseModelConfig } from '../../shared/model/modelSpec.ts'
import { openSafetensors, type SafetensorsIndex } from '../../shared/model/safetensors.ts'
import { resolveModelSource } from '../model/resolveModelSource.ts'

/** What the Oracle needs to know about a model it serves, read from the checkpoint itself. */
export type ModelInfo = {
  /** Name on the wire: the folder name or the Hub repository id (what agents send as `model`). */
  name: string
  numLayers: number
  /** Bytes of the largest decoder layer's weights, as stored. */
  layerBytes: number
  /** Bytes the first shard holds besides its layers (token and position embeddings, their norm). */
  embedBytes: number
  /** Bytes the last shard holds besides its layers (final norm, LM head: the embeddings again when tied). */
  headBytes: number
  /** Where it was read from: a folder, a URL or a Hub id. */
  source: string
  /** keccak256(utf8(name)), as in inference proofs. */
  modelHash: Hex
  /** The local folder it was read from, when it was one (the Oracle then serves its files to hosts). */
  folder?: string
}

const bytesOf = (index: SafetensorsIndex, names: string[]) =>
  [...new Set(names)].reduce((sum, n) => {
    const t = index.tensors.get(n)
    return t ? sum + (t.end - t.start) : sum
  }, 0)

/** Reads `config.json` and the safetensors headers (no weights) of a source. */
export async function modelInfoFromSource(source: ModelSource, signal?: AbortSignal): Promise<ModelInfo> {
  const spec = parseModelConfig(await source.readText('config.json', signal))
  const index = await openSafetensors(source, signal)
  const family = familyBuilder(spec, index)
  let layerBytes = 0
  for (let i = 0; i < spec.numLayers; i++) layerBytes = Math.max(layerBytes, bytesOf(index, family.layerTensors(i)))
  return {
    name: source.name,
    numLayers: spec.numLayers,
    layerBytes,
    embedBytes: bytesOf(index, family.embeddingTensors()),
    headBytes: bytesOf(index, family.finalTensors()),
    source: source.location,
    modelHash: keccak256(stringToBytes(source.name)),
  }
}

/** `--model` (a folder, a base URL or a Hub id; absent: the shipped model) → its ModelInfo. */
export async function readModelInfo(spec: string | undefined, options: { env?: NodeJS.ProcessEnv; signal?: AbortSignal } = {}): Promise<ModelInfo> {
  const source = resolveModelSource(spec, options.env)
  const info = await modelInfoFromSource(source, options.signal)
  return { ...info, source: spec ?? source.location, folder: /^https?:\/\//.test(source.location) ? undefined : source.location }
}
