import { requestGpuAdapterInfo, type GpuAdapterInfo } from '../engine/gpuAdapter.ts'

/** What a contributor's page can offer, in the Orban agent's hardware shape. */
export type PageHardwareProfile = {
  gpus: Array<{ index: number; vendor: string; model: string; vram_gb: number; compute_capability: string; cuda_cores: null; pcie_bandwidth_gbps: number }>
  cpu: { model: string; cores: number; threads: number }
  memory_gb: number
  storage_available_gb: number
  adapter: GpuAdapterInfo | null
  /** Bytes the page can offer for weights: a conservative share of what the browser reports. */
  memoryBytes: number
}

const GB = 1024 ** 3

/**
 * Reads `navigator.gpu` (adapter info and limits) and `navigator.deviceMemory`. Browsers round
 * deviceMemory down and cap it at 8 GB, and expose no VRAM size: the offer is half the reported
 * memory, bounded by the adapter's largest buffer times the tensors a layer range holds.
 */
export async function readPageHardwareProfile(): Promise<PageHardwareProfile> {
  const nav = globalThis.navigator as Navigator & { deviceMemory?: number; storage?: StorageManager }
  const adapter = await requestGpuAdapterInfo()
  const memoryGb = nav.deviceMemory ?? 4
  const storage = await nav.storage?.estimate?.().catch(() => undefined)
  const threads = nav.hardwareConcurrency ?? 1
  const offer = (memoryGb * GB) / 2
  return {
    gpus: adapter
      ? [{ index: 0, vendor: adapter.vendor || 'unknown', model: adapter.description || adapter.architecture || adapter.device || 'webgpu', vram_gb: Math.floor(offer / GB) /* whole GB: upstream's vram_gb is a u32 */, compute_capability: adapter.shaderF16 ? 'shader-f16' : '', cuda_cores: null, pcie_bandwidth_gbps: 0 }]
      : [],
    cpu: { model: nav.userAgent, cores: threads, threads },
    memory_gb: memoryGb,
    storage_available_gb: storage?.quota !== undefined ? Math.round((((storage.quota ?? 0) - (storage.usage ?? 0)) / GB) * 100) / 100 : 0,
    adapter,
    memoryBytes: offer,
  }
}
