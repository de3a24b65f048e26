/// <reference types="vite/client" />
import * as ort from 'onnxruntime-web/webgpu'
// The WebGPU build's wasm binary, served from this origin (Vite emits it as an asset): never a CDN.
import defaultWasmUrl from 'onnxruntime-web/ort-wasm-simd-threaded.asyncify.wasm?url'
import type { ShardGraph } from '../../shared/model/buildShardGraph.ts'
import { isStoredShard, type ShardModel } from '../../shared/engine/shardGraphCache.ts'
import { EXTERNAL_DATA_FILE } from '../../shared/model/onnxGraph.ts'
import { DeviceUnavailableError, type Device, type DeviceOption, type ShardRuntime } from '../../shared/engine/runtime.ts'
import { requestGpuAdapterInfo } from './gpuAdapter.ts'

export type WebRuntimeInit = {
  /** URL of `ort-wasm-simd-threaded.asyncify.wasm`. @default the copy Vite serves from this origin */
  wasmUrl?: string
  /**
   * WebAssembly threads. More than 1 needs a cross-origin isolated page, and ORT then starts its
   * pthread workers from its own module URL, which bundled into the engine worker is that worker.
   * @default 1
   */
  numThreads?: number
}

let configured = false

/** ORT's environment is global and fixed once the first session exists: set it once. */
function configureOrt(init: WebRuntimeInit): void {
  if (configured) return
  configured = true
  ort.env.wasm.wasmPaths = { wasm: new URL(init.wasmUrl ?? defaultWasmUrl, globalThis.location?.href).href }
  ort.env.wasm.numThreads = init.numThreads ?? 1
  ort.env.logLevel = 'error'
}

/** The weights as the one buffer that `externalData` takes. */
function concatWeights(graph: ShardGraph): Uint8Array {
  const out = new Uint8Array(graph.weightBytes)
  let offset = 0
  for (const chunk of graph.weights) {
    out.set(chunk, offset)
    offset += chunk.length
  }
  return out
}

function sessionOptions(device: Device, graph: ShardModel, weights: Uint8Array): ort.InferenceSession.SessionOptions {
  const options: ort.InferenceSession.SessionOptions = {
    executionProviders: [device === 'cpu' ? 'wasm' : device],
    graphOptimizationLevel: 'all',
    logSeverityLevel: 3,
    externalData: [{ path: EXTERNAL_DATA_FILE, data: weights }],
  }
  if (device === 'webgpu') {
    // Keep the KV cache on the GPU between steps; only logits and hidden states come back.
    options.preferredOutputLocation = Object.fromEntries(
      graph.io.layers.flatMap((i) => [`present_key.${i}`, `present_value.${i}`]).map((n) => [n, 'gpu-buffer' as const]),
    )
  }
  return options
}

/**
 * onnxruntime-web in a page or worker: `webgpu` (ORT's WebGPU execution provider) with `wasm`
 * fallback when no adapter exists; `cpu` means `wasm` here.
 */
export function webRuntime(init: WebRuntimeInit = {}): ShardRuntime {
  return {
    ort,
    float16Supported: async () => (await requestGpuAdapterInfo())?.shaderF16 ?? false,
    async createSession(graph: ShardModel, device: DeviceOption) {
      configureOrt(init)
      if (isStoredShard(graph)) throw new Error('the web runtime opens built graphs only, not stored shards')
      const weights = concatWeights(graph)
      // The chunks are copied into `weights`: let them be collected while ORT copies it once more.
      graph.weights.length = 0
      const tryDevice = async (d: Device) => ({ session: await ort.InferenceSession.create(graph.model, sessionOptions(d, graph, weights)), device: d })
      if (device === 'cpu' || device === 'wasm') return tryDevice('wasm')
      const adapter = await requestGpuAdapterInfo()
      if (!adapter) {
        if (device === 'webgpu') throw new DeviceUnavailableError('webgpu', new Error('the browser offers no WebGPU adapter'))
        return tryDevice('wasm')
      }
      try {
        return await tryDevice('webgpu')
      } catch (e) {
        if (device === 'webgpu') throw new DeviceUnavailableError('webgpu', e)
        return tryDevice('wasm')
      }
    },
  }
}
