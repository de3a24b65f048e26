import { loadShards } from '../shared/engine/loadShards.ts'
import type { ShardSession } from '../shared/engine/shardSession.ts'
import { createTextGenerator, stagesRunner, type GenerationRunner, type TextGenerator } from '../shared/engine/textGenerator.ts'
import { loadTokenizer } from '../shared/model/tokenizer.ts'
import { nodeRuntime } from '../node-host/engine/nodeRuntime.ts'
import { fileModelSource } from '../node-host/model/fileModelSource.ts'
import { DEFAULT_MODEL_DIR } from '../node-host/model/resolveModelSource.ts'

/**
 * The shipped default model loaded whole on the CPU and a text generator over it, for tests of
 * what serves text (the HTTP APIs). `wrap` sees each generation before it runs (to hold it at a
 * gate, record its signal); the shards are the caller's to dispose.
 */
export async function defaultModelGenerator(wrap?: (run: GenerationRunner) => GenerationRunner): Promise<{ shards: ShardSession[]; generator: TextGenerator }> {
  const source = fileModelSource(DEFAULT_MODEL_DIR)
  const { shards } = await loadShards({ source, runtime: nodeRuntime(), device: 'cpu', ranges: [{ start: 0, end: 8 }] })
  const run = stagesRunner(() => shards)
  const generator = createTextGenerator({ tokenizer: await loadTokenizer(source), eosTokenIds: [0], run: wrap ? wrap(run) : run })
  return { shards, generator }
}
