/** What the browser says about a WebGPU adapter (`GPUAdapterInfo`). */
export type GpuAdapterInfo = {
  vendor: string
  architecture: string
  device: string
  description: string
  /** Whether `shader-f16` is among the adapter's features. */
  shaderF16: boolean
  /** The adapter's buffer limits, bytes: what bounds the largest weight tensor a shard can hold. */
  maxBufferSize: number
  maxStorageBufferBindingSize: number
}

// TypeScript's DOM lib has no WebGPU types yet; only what this file reads.
type GpuAdapterLike = {
  info?: Partial<Record<'vendor' | 'architecture' | 'device' | 'description', string>>
  features: { has(name: string): boolean }
  limits?: { maxBufferSize?: number; maxStorageBufferBindingSize?: number }
}
type GpuLike = { requestAdapter(options?: { powerPreference?: 'low-power' | 'high-performance' }): Promise<GpuAdapterLike | null> }

/**
 * Asks for a WebGPU adapter the way onnxruntime-web does; null when the browser has no WebGPU
 * (no `navigator.gpu`, an insecure context) or no adapter (blocklisted or absent GPU).
 */
export async function requestGpuAdapterInfo(): Promise<GpuAdapterInfo | null> {
  const gpu = (globalThis.navigator as { gpu?: GpuLike } | undefined)?.gpu
  if (!gpu) return null
  const adapter = await gpu.requestAdapter({ powerPreference: 'high-performance' }).catch(() => null)
  if (!adapter) return null
  const info = adapter.info ?? {}
  return {
    vendor: info.vendor ?? '',
    architecture: info.architecture ?? '',
    device: info.device ?? '',
    description: info.description ?? '',
    shaderF16: adapter.features.has('shader-f16'),
    maxBufferSize: adapter.limits?.maxBufferSize ?? 0,
    maxStorageBufferBindingSize: adapter.limits?.maxStorageBufferBindingSize ?? 0,
  }
}
