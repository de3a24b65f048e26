import { readPageHardwareProfile } from '../agent/pageHardwareProfile.ts'
import type { GpuAdapterInfo } from '../engine/gpuAdapter.ts'

/** What this tab can offer, in the words the Contribute view shows. */
export type Capabilities = {
  adapter: GpuAdapterInfo | null
  /** Why there is no adapter, when there is none. */
  webgpuMissing?: 'no-navigator-gpu' | 'no-adapter'
  /** `navigator.deviceMemory` (GB, rounded down and capped at 8 by browsers); null when the browser does not say. */
  deviceMemoryGb: number | null
  threads: number
  /** The engine backend this tab runs shards on. */
  backend: 'webgpu' | 'wasm'
  /** Bytes offered for weights by default (half the reported memory). */
  defaultOfferBytes: number
}

export async function readCapabilities(): Promise<Capabilities> {
  const nav = navigator as Navigator & { deviceMemory?: number; gpu?: unknown }
  const profile = await readPageHardwareProfile()
  return {
    adapter: profile.adapter,
    ...(profile.adapter ? {} : { webgpuMissing: nav.gpu ? 'no-adapter' : 'no-navigator-gpu' }),
    deviceMemoryGb: nav.deviceMemory ?? null,
    threads: nav.hardwareConcurrency ?? 1,
    backend: profile.adapter ? 'webgpu' : 'wasm',
    defaultOfferBytes: profile.memoryBytes,
  }
}
