/**
 * The field kinds and shared shapes the Orban message schemas are built from. Receivers are lenient
 * where senders differ (see orbanMessages.ts); every bound here keeps a hostile frame cheap to refuse.
 */

import { z } from 'zod'

// ---- field kinds ----

const MAX_UINT32 = 0xffff_ffff
const MAX_UINT64 = 0xffff_ffff_ffff_ffffn
// Year 9999: beyond it Date and RFC 3339 disagree.
const MAX_UNIX_SECONDS = 253_402_300_799

/**
 * A decimal as text. Each part is matched by one unambiguous branch (digits, then optionally a dot
 * and digits): `\d+\.?\d*` split a run of digits between two quantifiers in n ways and
 * backtracked quadratically on a long non-matching string (20 KB blocked the event loop for
 * seconds). Lengths are bounded before any pattern runs.
 */
export const DECIMAL_PATTERN = /^[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?$/
/** A decimal (rust_decimal serialises as a string, floats as numbers): both accepted, a number out. */
export const decimal = z
  .union([z.number(), z.string().max(64).trim().regex(DECIMAL_PATTERN, 'not a decimal number')])
  .transform(Number)
  .pipe(z.number())
export const nonNegative = decimal.pipe(z.number().min(0))
export const uint32 = z.number().int().min(0).max(MAX_UINT32)
/** u64 counts that fit a JS number (a protobuf JSON mapping writes them as strings). */
export const uint64 = z
  .union([z.number(), z.string().regex(/^\d{1,16}$/, 'not an unsigned integer')])
  .transform(Number)
  .pipe(z.number().int().min(0).max(Number.MAX_SAFE_INTEGER))
/** A full 64-bit counter: a number, or a decimal string when it exceeds 2^53. */
export const counter64 = z
  .union([z.number().int().min(0).max(Number.MAX_SAFE_INTEGER), z.string().regex(/^\d{1,20}$/, 'not an unsigned integer'), z.bigint()])
  .transform((v) => BigInt(v))
  .pipe(z.bigint().min(0n).max(MAX_UINT64))

/** RFC 3339 (any offset, any sub-second precision) or unix seconds; out: ISO 8601 UTC, ms precision. */
export const timestamp = z
  .union([
    z
      .string()
      .max(64)
      .transform((s) => s.toUpperCase())
      .pipe(z.iso.datetime({ offset: true })),
    z.number().int().min(0).max(MAX_UNIX_SECONDS),
    z.date(),
  ])
  .transform((v, ctx) => {
    const date = typeof v === 'number' ? new Date(v * 1000) : new Date(v)
    if (Number.isNaN(date.getTime())) {
      ctx.issues.push({ code: 'custom', message: 'not a valid time', input: v })
      return z.NEVER
    }
    return date.toISOString()
  })

export const id = z.string().min(1).max(256)
export const text = z.string().max(4096)
export const hex = z
  .string()
  .max(1024)
  .transform((s) => s.replace(/^0x/i, '').toLowerCase())
  .pipe(z.string().regex(/^([0-9a-f]{2})*$/, 'not hex bytes'))
/** How deep and how large free-form JSON (a task's config, an error's context) may be. */
const MAX_JSON_DEPTH = 32
const MAX_JSON_NODES = 4096
/**
 * Free-form JSON, checked without recursion (z.json() recursed once per nesting level: a frame of
 * nested brackets overflowed the stack) and bounded in depth and size.
 */
function isBoundedJson(value: unknown): value is JsonValue {
  const stack: Array<[unknown, number]> = [[value, 0]]
  let nodes = 0
  while (stack.length) {
    const [v, depth] = stack.pop()!
    if (++nodes > MAX_JSON_NODES || depth > MAX_JSON_DEPTH) return false
    if (v === null || typeof v === 'boolean' || typeof v === 'string') continue
    if (typeof v === 'number') {
      if (!Number.isFinite(v)) return false
      continue
    }
    if (Array.isArray(v)) for (const item of v) stack.push([item, depth + 1])
    else if (typeof v === 'object' && Object.getPrototypeOf(v) === Object.prototype) for (const item of Object.values(v)) stack.push([item, depth + 1])
    else return false
  }
  return true
}
export type JsonValue = string | number | boolean | null | JsonValue[] | { [key: string]: JsonValue }
export const json = z.custom<JsonValue>(isBoundedJson, `not JSON, or deeper than ${MAX_JSON_DEPTH} levels or larger than ${MAX_JSON_NODES} values`)

/** Enum values matched case-insensitively (upstream's docs and serde disagree on casing). */
export function caseless<const T extends readonly [string, ...string[]]>(values: T) {
  const byLower = new Map(values.map((v) => [v.toLowerCase(), v]))
  return z
    .string()
    .max(64)
    .transform((s) => byLower.get(s.toLowerCase()) ?? s)
    .pipe(z.enum(values))
}

// ---- shared shapes ----

export const gpuInfo = z.object({
  index: uint32,
  /** NVIDIA, AMD, Intel, Apple upstream; any name accepted. */
  vendor: z.string().max(64),
  model: z.string().max(256),
  /** Whole GB upstream; fractions accepted. */
  vram_gb: nonNegative,
  /** CUDA compute capability ("8.9"); empty where it does not apply. */
  compute_capability: z.string().max(32),
  cuda_cores: uint32.nullable().default(null),
  pcie_bandwidth_gbps: nonNegative,
})

export const hardware = z.object({
  gpus: z.array(gpuInfo).max(64),
  cpu: z.object({ model: z.string().max(256), cores: uint32, threads: uint32 }),
  memory_gb: nonNegative,
  storage_available_gb: nonNegative,
})

export const capabilities = z.object({
  supported_frameworks: z.array(z.string().max(64)).max(64),
  max_batch_size: uint32,
  fp16_support: z.boolean(),
  int8_support: z.boolean(),
})

export const location = z.object({ country: z.string().max(64), region: z.string().max(128), latency_to_platform_ms: nonNegative })
export const availability = z.object({ hours_per_day: nonNegative.pipe(z.number().max(24)), reliability_score: nonNegative })

/** shardmesh's extension to AGENT_REGISTER: the agent's libp2p node. */
export const mesh = z.object({
  peer_id: z.string().min(1).max(128),
  multiaddrs: z.array(z.string().max(1024)).max(64),
  /** The model the host would rather serve (it has a local copy). */
  model: z.string().max(256).optional(),
  /** The device it runs shards on: cpu, webgpu, wasm. */
  device: z.string().max(32).optional(),
  /** Memory it offers for weights, MiB (VRAM on a GPU, RAM otherwise). */
  memory_mb: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER).optional(),
  /** Decode tokens/s of the reference engine benchmark. */
  benchmark_tok_per_sec: z.number().min(0).max(1e9).optional(),
})

/**
 * shardmesh's extension to TASK_PROGRESS: what the agent's shard served, cumulative since the
 * agent started (upstream has no field for it; an upstream platform drops it unread). The Oracle
 * takes the rise between reports, bounded by what it observed (servedLedger.ts).
 */
export const served = z.object({
  /** Positions (prompt tokens and decode steps) run through the agent's layers. */
  tokens: uint64,
  /** Forward frames computed (a prefill chunk or one decode step each). */
  steps: uint64,
  /** Sessions opened on its shard. */
  sessions: uint64,
})

export const pricing = z.object({ base_rate_usd_per_hour: decimal, gpu_multiplier: decimal, effective_rate: decimal })

export const gpuStatus = z.object({
  index: uint32,
  utilization: decimal,
  memory_used_gb: decimal,
  memory_total_gb: decimal,
  temperature_c: decimal,
  power_draw_w: decimal,
  fan_speed_percent: decimal,
})

export const progress = decimal.pipe(z.number().min(0).max(1))
