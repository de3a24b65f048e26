import { familyBuilder } from '../../shared/model/buildShardGraph.ts'
import { httpModelSource } from '../../shared/model/modelSource.ts'
import { parseModelConfig } from '../../shared/model/modelSpec.ts'
import { openSafetensors, type SafetensorsIndex } from '../../shared/model/safetensors.ts'

/** Weight bytes of a model's parts, from its safetensors header (no weights read): what a range costs to download. */
export type ModelSizes = { numLayers: number; layerBytes: number; embedBytes: number; headBytes: number }

const bytesOf = (index: SafetensorsIndex, names: string[]) => [...new Set(names)].reduce((sum, n) => sum + ((t) => (t ? t.end - t.start : 0))(index.tensors.get(n)), 0)

export async function readModelSizes(modelUrl: string, signal?: AbortSignal): Promise<ModelSizes> {
  const source = httpModelSource({ baseUrl: new URL(modelUrl, location.href).href })
  const spec = parseModelConfig(await source.readText('config.json', signal))
  const index = await openSafetensors(source, signal)
  const family = familyBuilder(spec, index)
  let layerBytes = 0
  for (let i = 0; i < spec.numLayers; i++) layerBytes = Math.max(layerBytes, bytesOf(index, family.layerTensors(i)))
  return { numLayers: spec.numLayers, layerBytes, embedBytes: bytesOf(index, family.embeddingTensors()), headBytes: bytesOf(index, family.finalTensors()) }
}
