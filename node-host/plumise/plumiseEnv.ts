import { existsSync, readFileSync } from 'node:fs'
import { parseEnv } from 'node:util'
import { z } from 'zod'
import type { DeviceOption } from '../../shared/engine/runtime.ts'

/**
 * The upstream agent's configuration names (its `.env`), so an operator can swap the Python
 * agent for this one without editing them. Wallet, chain and reporting names (PLUMISE_PRIVATE_KEY,
 * PLUMISE_RPC_URL, PLUMISE_CHAIN_ID, REPORT_INTERVAL, CLAIM_THRESHOLD_WEI, API_SECRET) are read
 * where they are used (loadWallet, chainAgentFromEnv, the HTTP API).
 */
const port = z.coerce.number().int().min(0).max(65535)
const envSchema = z
  .object({
    MODEL_NAME: z.string().min(1).optional(),
    /** Upstream: auto|cpu|cuda|mps; GPUs run here through WebGPU. */
    DEVICE: z.string().default('auto'),
    GRPC_PORT: port.default(50051),
    API_PORT: port.default(31331),
    LAYER_START: z.coerce.number().int().nonnegative().optional(),
    LAYER_END: z.coerce.number().int().positive().optional(),
    ORACLE_API_URL: z.url({ protocol: /^https?$/ }).default('http://localhost:3100'),
    /** The host name other nodes dial (registered endpoints); defaults to the bind address. */
    PUBLIC_HOST: z.string().min(1).optional(),
    VERIFY_ON_CHAIN: z.enum(['true', 'false', '1', '0', '']).default('false'),
  })
  .refine((e) => (e.LAYER_START === undefined) === (e.LAYER_END === undefined), { message: 'LAYER_START and LAYER_END go together' })
  .refine((e) => e.LAYER_START === undefined || e.LAYER_START < e.LAYER_END!, { message: 'LAYER_START must be below LAYER_END' })

export type PlumiseEnv = z.infer<typeof envSchema>

export class PlumiseEnvError extends Error {
  constructor(message: string) {
    super(message)
    this.name = 'PlumiseEnvError'
  }
}

/**
 * Reads `.env` (when present) into `env` without overriding what is already set (the process
 * environment wins, as python-dotenv does by default), then validates the upstream names.
 */
export function loadPlumiseEnv(env: Record<string, string | undefined> = process.env, file = '.env'): PlumiseEnv {
  if (existsSync(file)) {
    for (const [k, v] of Object.entries(parseEnv(readFileSync(file, 'utf8')))) if (env[k] === undefined) env[k] = v
  }
  const parsed = envSchema.safeParse(env)
  if (!parsed.success) {
    const i = parsed.error.issues[0]!
    throw new PlumiseEnvError(`${i.path.join('.') || 'environment'}: ${i.message}`)
  }
  return parsed.data
}

/** Upstream's DEVICE as this engine's device. */
export function plumiseDevice(device: string): DeviceOption {
  const d = device.toLowerCase()
  if (d === 'cuda' || d.startsWith('cuda:') || d === 'mps' || d === 'gpu' || d === 'webgpu') return 'webgpu'
  if (d === 'cpu' || d === 'wasm') return d
  return 'auto'
}
