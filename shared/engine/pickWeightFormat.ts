import type { WeightFormat } from '../model/shardGraph.ts'
import type { DeviceOption, ShardRuntime } from './runtime.ts'

/** A weight format, or `auto`: float16 where the device computes in half precision, else float32. */
export type WeightChoice = WeightFormat | 'auto'

/**
 * Resolves `auto`: float16 when the WebGPU adapter has `shader-f16` (half the bytes to load, hold
 * and read per token; greedy ids still match the reference, see engine.float16.test.ts), float32
 * (the reference) on the CPU, wasm and adapters without it. A named format is kept as it is.
 */
export async function pickWeightFormat(choice: WeightChoice | undefined, runtime: ShardRuntime, device: DeviceOption): Promise<WeightFormat> {
  if (choice !== 'auto') return choice ?? 'float32'
  if (device === 'cpu' || device === 'wasm') return 'float32'
  return (await runtime.float16Supported?.()) ? 'float16' : 'float32'
}
