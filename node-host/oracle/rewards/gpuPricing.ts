import { readFile } from 'node:fs/promises'
import { z } from 'zod'
import type { OrbanPayload, OrbanPricing } from '../../../shared/orban/orbanMessages.ts'

/**
 * Pricing per GPU class, from the Oracle's configuration (`shardmesh oracle --pricing <file>`):
 * a base hourly rate and a multiplier per class, the class being the first configured name found
 * in the model of the agent's largest GPU (case ignored). What REGISTER_ACK offers, TASK_ASSIGN
 * repeats and EARNINGS_RECORD pays at.
 *
 * ```json
 * { "base_rate_usd_per_hour": 0.5, "classes": { "H100": 4, "A100": 3, "RTX 4090": 1.6 }, "default_multiplier": 1, "cpu_multiplier": 0.1 }
 * ```
 */
export const gpuPricingSchema = z
  .object({
    base_rate_usd_per_hour: z.number().min(0).max(1e6),
    /** Multiplier by GPU class, matched as a substring of the GPU's model name, in this order. */
    classes: z.record(z.string().min(1).max(128), z.number().min(0).max(1e4)).default({}),
    /** A GPU of no listed class. */
    default_multiplier: z.number().min(0).max(1e4).default(1),
    /** An agent with no GPU (CPU or a page reporting none). */
    cpu_multiplier: z.number().min(0).max(1e4).default(0.1),
  })
  .strict()
export type GpuPricingConfig = z.input<typeof gpuPricingSchema>

/** The pricing file is missing, not JSON, or not the schema. */
export class GpuPricingConfigError extends Error {
  constructor(source: string, reason: string) {
    super(`pricing configuration ${source}: ${reason}`)
    this.name = 'GpuPricingConfigError'
  }
}

export function parseGpuPricing(value: unknown, source = 'value'): z.output<typeof gpuPricingSchema> {
  const parsed = gpuPricingSchema.safeParse(value)
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!
    throw new GpuPricingConfigError(source, `${issue.path.join('.') || '(root)'}: ${issue.message}`)
  }
  return parsed.data
}

export async function loadGpuPricing(path: string): Promise<z.output<typeof gpuPricingSchema>> {
  let text: string
  try {
    text = await readFile(path, 'utf8')
  } catch (e) {
    throw new GpuPricingConfigError(path, (e as Error).message)
  }
  let value: unknown
  try {
    value = JSON.parse(text)
  } catch (e) {
    throw new GpuPricingConfigError(path, `not JSON: ${(e as Error).message}`)
  }
  return parseGpuPricing(value, path)
}

const round = (x: number, digits: number) => Math.round(x * 10 ** digits) / 10 ** digits

/** The GPU class of a registration (the configured name found in its largest GPU's model), or 'cpu' / 'other'. */
export function gpuClassOf(config: z.output<typeof gpuPricingSchema>, registration: Pick<OrbanPayload<'AGENT_REGISTER'>, 'hardware'>): string {
  const largest = [...registration.hardware.gpus].sort((a, b) => b.vram_gb - a.vram_gb)[0]
  if (!largest) return 'cpu'
  const model = largest.model.toLowerCase()
  return Object.keys(config.classes).find((c) => model.includes(c.toLowerCase())) ?? 'other'
}

/** REGISTER_ACK pricing for a registration under this configuration. */
export function gpuPricing(config: z.output<typeof gpuPricingSchema>): (registration: OrbanPayload<'AGENT_REGISTER'>) => OrbanPricing {
  return (registration) => {
    const cls = gpuClassOf(config, registration)
    const multiplier = cls === 'cpu' ? config.cpu_multiplier : cls === 'other' ? config.default_multiplier : config.classes[cls]!
    return { base_rate_usd_per_hour: config.base_rate_usd_per_hour, gpu_multiplier: multiplier, effective_rate: round(config.base_rate_usd_per_hour * multiplier, 6) }
  }
}
