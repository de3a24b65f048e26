import { z } from 'zod'
import type { OrbanMessageType } from '../shared/orban/orbanMessages.ts'

/**
 * The Orban message types as the upstream agent (Rust, serde) declares them, transcribed from
 * shared/spec/orban.md: what a frame must be for upstream to read it at all. Integers where
 * upstream has u32/u64 (a `1.5` or `0.01` there makes serde drop the frame), every non-Option
 * field present, DateTime<Utc> as RFC 3339 text, rust_decimal as a number or a decimal string.
 * Unknown fields are ignored (serde's default), so our extensions (`mesh`, `counter`) pass.
 * This is deliberately independent of orbanMessages.ts (our own, more lenient, receiver schemas).
 */

const u32 = z.number().int().min(0).max(0xffff_ffff)
const u64 = z.number().int().min(0).max(Number.MAX_SAFE_INTEGER)
const f64 = z.number()
const decimal = z.union([z.number(), z.string().regex(/^-?\d+(\.\d+)?$/)])
const str = z.string()
const bool = z.boolean()
const rfc3339 = z.string().regex(/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$/, 'not RFC 3339')
const uuid = z.string().regex(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/i)
const jsonValue = z.unknown()
const pricing = z.object({ base_rate_usd_per_hour: decimal, gpu_multiplier: decimal, effective_rate: decimal })

export const upstreamOrbanPayloads = {
  AUTH_CHALLENGE: z.object({ challenge: str }),
  AUTH_RESPONSE: z.object({ agent_id: str, signature: str, public_key: str }),
  AUTH_SUCCESS: z.object({ jwt_token: str, expires_in: u64 }),
  AGENT_REGISTER: z.object({
    agent_id: str,
    hardware: z.object({
      gpus: z.array(z.object({ index: u32, vendor: str, model: str, vram_gb: u32, compute_capability: str, cuda_cores: u32.nullable(), pcie_bandwidth_gbps: f64 })),
      cpu: z.object({ model: str, cores: u32, threads: u32 }),
      memory_gb: f64,
      storage_available_gb: f64,
    }),
    capabilities: z.object({ supported_frameworks: z.array(str), max_batch_size: u32, fp16_support: bool, int8_support: bool }),
    location: z.object({ country: str, region: str, latency_to_platform_ms: f64 }),
    availability: z.object({ hours_per_day: f64, reliability_score: f64 }),
  }),
  REGISTER_ACK: z.object({ agent_id: str, status: str, pricing }),
  TASK_ASSIGN: z.object({
    task_id: str,
    job_id: str,
    priority: u32,
    estimated_duration_sec: u32,
    requirements: z.object({ min_vram_gb: u32, min_compute_capability: str, framework: str, fp16: bool }),
    payload: z.object({ model_url: str, model_hash: str, input_data_url: str, output_url: str, config: jsonValue }),
    pricing,
  }),
  TASK_ACCEPT: z.object({ task_id: str, agent_id: str, gpu_allocated: u32, estimated_completion: rfc3339 }),
  TASK_REJECT: z.object({ task_id: str, reason: str, details: str }),
  TASK_PROGRESS: z.object({
    task_id: str,
    progress: f64,
    stage: str,
    metrics: z.object({ gpu_utilization: f64, memory_used_gb: f64, throughput_tokens_per_sec: f64.nullable().optional() }),
  }),
  TASK_COMPLETE: z.object({
    task_id: str,
    result: z.object({ output_url: str, output_hash: str, execution_time_sec: f64, gpu_time_sec: f64 }),
    proof_of_work: z.object({ method: str, challenge_id: str, response: z.union([str, z.array(z.number().int().min(0).max(255))]), gpu_signature: str }),
    metrics: z.object({ avg_gpu_utilization: f64, peak_memory_gb: f64, energy_kwh: f64 }),
  }),
  TASK_FAILED: z.object({ task_id: str, error: z.object({ code: str, message: str, details: str }), partial_results: str.nullable().optional() }),
  HEARTBEAT: z.object({
    agent_id: str,
    status: z.enum(['idle', 'working', 'error', 'offline']),
    current_task_id: str.nullable().optional(),
    gpu_status: z.array(z.object({ index: u32, utilization: f64, memory_used_gb: f64, memory_total_gb: f64, temperature_c: f64, power_draw_w: f64, fan_speed_percent: f64 })),
    uptime_sec: u64,
  }),
  METRICS_BATCH: z.object({
    agent_id: str,
    time_range: z.object({ start: rfc3339, end: rfc3339 }),
    aggregated_metrics: z.object({ tasks_completed: u32, tasks_failed: u32, total_gpu_hours: f64, avg_gpu_utilization: f64, total_energy_kwh: f64, earnings_usd: decimal }),
  }),
  EARNINGS_RECORD: z.object({
    task_id: str,
    earnings: z.object({ gpu_hours: decimal, rate_usd_per_hour: decimal, amount_usd: decimal, bonus_multiplier: decimal, final_amount_usd: decimal }),
    status: z.enum(['Pending', 'Confirmed', 'Paid']),
    estimated_payout_date: str,
  }),
  PAYOUT_NOTIFICATION: z.object({
    payout_id: str,
    period: z.object({ start: str, end: str }),
    summary: z.object({ total_tasks: u32, total_gpu_hours: decimal, gross_amount_usd: decimal, platform_fee_usd: decimal, net_amount_usd: decimal }),
    payment_method: str,
    payment_address: str,
    status: str,
  }),
  POW_CHALLENGE: z.object({ challenge_id: str, nonce: z.string().regex(/^([0-9a-f]{2})+$/), difficulty: u32, deadline: rfc3339 }),
  POW_RESPONSE: z.object({ challenge_id: str, response: str, computation_time_ms: u64, gpu_signature: z.object({ device_uuid: str, cuda_version: str.nullable().optional() }) }),
  ERROR: z.object({ code: str, message: str, context: jsonValue, recoverable: bool }),
  STATE_SYNC: z.object({ agent_id: str, last_heartbeat: rfc3339, active_tasks: z.array(z.object({ task_id: str, progress: f64, started_at: rfc3339 })) }),
} as const satisfies Record<OrbanMessageType, z.ZodType>

const envelope = z.object({ message_id: uuid, timestamp: rfc3339, type: z.string() })

/** Checks one JSON text frame as upstream would read it; returns its type, throws with the problem. */
export function checkUpstreamFrame(text: string): OrbanMessageType {
  const value: unknown = JSON.parse(text)
  const env = envelope.parse(value)
  const schema = upstreamOrbanPayloads[env.type as OrbanMessageType]
  if (!schema) throw new Error(`unknown type ${env.type}`)
  const r = schema.safeParse(value)
  if (!r.success) throw new Error(`${env.type} does not fit upstream's types: ${r.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}\n${text.slice(0, 600)}`)
  return env.type as OrbanMessageType
}
