import { mkdtemp, open, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import ort from 'onnxruntime-node'
import type { ShardGraph } from '../../shared/model/buildShardGraph.ts'
import { EXTERNAL_DATA_FILE } from '../../shared/model/onnxGraph.ts'
import { engineThreads } from './engineThreads.ts'
import { float16FeedsForNode } from './float16Feeds.ts'
import { webgpuFloat16Supported } from './webgpuFloat16.ts'
import { isStoredShard, type ShardModel } from '../../shared/engine/shardGraphCache.ts'
import { MODEL_FILE } from './fileShardCache.ts'
import { DeviceUnavailableError, type Device, type DeviceOption, type ShardRuntime } from '../../shared/engine/runtime.ts'

/** Writes the shard model and its external weights to a temporary folder (ORT Node loads models from paths). */
async function writeArtifact(graph: ShardGraph): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'shardmesh-shard-'))
  await writeFile(join(dir, MODEL_FILE), graph.model)
  const file = await open(join(dir, EXTERNAL_DATA_FILE), 'w')
  try {
    for (const chunk of graph.weights) await file.write(chunk)
  } finally {
    await file.close()
  }
  return dir
}

function sessionOptions(device: Device, graph: ShardModel, init: NodeRuntimeInit): ort.InferenceSession.SessionOptions {
  const options: ort.InferenceSession.SessionOptions = {
    executionProviders: [device],
    graphOptimizationLevel: 'all',
    logSeverityLevel: 3,
  }
  // SHARDMESH_ORT_PROFILE=<prefix>: ONNX Runtime's per-node timings as Chrome-trace JSON, written when the session is released.
  const profile = process.env.SHARDMESH_ORT_PROFILE
  if (profile) Object.assign(options, { enableProfiling: true, profileFilePrefix: profile })
  // Also on webgpu: the nodes ORT places on the CPU there (shapes, small ops) use this pool.
  options.intraOpNumThreads = init.threads ?? engineThreads()
  if (device === 'cpu' && init.spinning === false) {
    // Idle ORT threads sleep instead of spinning: several processes sharing cores stop starving each other.
    options.extra = { session: { intra_op: { allow_spinning: '0' }, inter_op: { allow_spinning: '0' } } }
  }
  if (device === 'webgpu') {
    // Keep the KV cache on the GPU between steps; only logits and hidden states come back.
    options.preferredOutputLocation = Object.fromEntries(
      graph.io.layers.flatMap((i) => [`present_key.${i}`, `present_value.${i}`]).map((n) => [n, 'gpu-buffer' as const]),
    )
  }
  return options
}

export type NodeRuntimeInit = {
  /** ORT intra-op threads. @default engineThreads(): SHARDMESH_THREADS (`--threads`), else every core */
  threads?: number
  /** Let idle ORT threads spin-wait (lowest latency when a process has the cores to itself). @default true */
  spinning?: boolean
}

/** onnxruntime-node: `webgpu` (Dawn; Vulkan on Linux) with `cpu` fallback when no adapter exists. */
export function nodeRuntime(init: NodeRuntimeInit = {}): ShardRuntime {
  return {
    ort,
    float16Supported: webgpuFloat16Supported,
    async createSession(graph: ShardModel, device: DeviceOption) {
      // A stored shard is opened where it lies; a graph in memory goes through a temporary folder.
      const stored = isStoredShard(graph)
      const dir = stored ? graph.location : await writeArtifact(graph)
      try {
        const path = join(dir, MODEL_FILE)
        const tryDevice = async (d: Device) => {
          const session = await ort.InferenceSession.create(path, sessionOptions(d, graph, init))
          if (graph.io.kvType === 'float16') {
            const run = session.run.bind(session) as (feeds: ort.InferenceSession.FeedsType, ...rest: unknown[]) => Promise<ort.InferenceSession.ReturnType>
            session.run = ((feeds: ort.InferenceSession.FeedsType, ...rest: unknown[]) => run(float16FeedsForNode(feeds), ...rest)) as typeof session.run
          }
          return { session, device: d }
        }
        if (device === 'cpu' || device === 'wasm') return await tryDevice('cpu')
        try {
          return await tryDevice('webgpu')
        } catch (e) {
          if (device === 'webgpu') throw new DeviceUnavailableError('webgpu', e)
          return await tryDevice('cpu')
        }
      } finally {
        if (!stored) await rm(dir, { recursive: true, force: true })
      }
    },
  }
}
