import type * as ort from 'onnxruntime-common'
import type { ShardModel } from './shardGraphCache.ts'

/** `auto` picks WebGPU when an adapter exists, else `cpu` (Node) or `wasm` (browser). */
export type DeviceOption = 'auto' | 'webgpu' | 'cpu' | 'wasm'
export type Device = 'webgpu' | 'cpu' | 'wasm'

export type OrtModule = Pick<typeof ort, 'Tensor' | 'InferenceSession'>

/**
 * What differs between onnxruntime-node and onnxruntime-web: how a built shard becomes an
 * inference session. Node opens a stored shard's files, or writes a built graph to files; the page passes bytes.
 */
export type ShardRuntime = {
  ort: OrtModule
  createSession(graph: ShardModel, device: DeviceOption): Promise<{ session: ort.InferenceSession; device: Device }>
  /** Whether this runtime's WebGPU adapter computes in float16 (`shader-f16`); absent: never. */
  float16Supported?(): Promise<boolean>
}

export class DeviceUnavailableError extends Error {
  readonly device: Device

  constructor(device: Device, cause: unknown) {
    super(`device "${device}" is not available: ${(cause as Error)?.message ?? cause}`, { cause })
    this.device = device
    this.name = 'DeviceUnavailableError'
  }
}
