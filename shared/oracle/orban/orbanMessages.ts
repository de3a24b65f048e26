import { z } from 'zod'

/**
 * The Orban agent protocol's JSON frames (spec: shared/spec/orban.md): an envelope
 * `{message_id, timestamp, type}` with the payload's fields flattened beside it.
 *
 * Receivers are lenient where senders differ (upstream is Rust + serde): decimals arrive as
 * numbers or strings, timestamps as RFC 3339 strings or unix seconds, enum casing varies, optional
 * fields may be absent or null, unknown fields are dropped. Parsed messages are normalised:
 * decimals are numbers, timestamps RFC 3339 UTC strings with millisecond precision
 * (`Date#toISOString`), absent optionals null.
 */

/** WebSocket subprotocol the agent must offer. */
export const ORBAN_SUBPROTOCOL = 'agent.orban.v1'
/** Path of the agent endpoint on the platform. */
export const ORBAN_PATH = '/agent/v1/connect'

export const ORBAN_MESSAGE_TYPES = [
  'AUTH_CHALLENGE',
  'AUTH_RESPONSE',
  'AUTH_SUCCESS',
  'AGENT_REGISTER',
  'REGISTER_ACK',
  'TASK_ASSIGN',
  'TASK_ACCEPT',
  'TASK_REJECT',
  'TASK_PROGRESS',
  'TASK_COMPLETE',
  'TASK_FAILED',
  'HEARTBEAT',
  'METRICS_BATCH',
  'EARNINGS_RECORD',
  'PAYOUT_NOTIFICATION',
  'POW_CHALLENGE',
  'POW_RESPONSE',
  'ERROR',
  'STATE_SYNC',
] as const

export type OrbanMessageType = (typeof ORBAN_MESSAGE_TYPES)[number]

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
const decimal = z
  .union([z.number(), z.string().max(64).trim().regex(DECIMAL_PATTERN, 'not a decimal number')])
  .transform(Number)
  .pipe(z.number())
const nonNegative = decimal.pipe(z.number().min(0))
const uint32 = z.number().int().min(0).max(MAX_UINT32)
/** u64 counts that fit a JS number (a protobuf JSON mapping writes them as strings). */
const uint64 = z
  .union([z.number(), z.string().regex(/^\d{1,16}$/, 'not an unsigned integer')])
  .transform(Number)
  .pipe(z.number().int().min(0).max(Number.MAX_SAFE_INTEGER))
/** A full 64-bit counter: a number, or a decimal string when it exceeds 2^53. */
const counter64 = z
  .union([z.number().int().min(0).max(Number.MAX_SAFE_INTEGER), z.string().regex(/^\d{1,20}$/, 'not an unsigned integer'), z.bigint()])
  .transform((v) => BigInt(v))
  .pipe(z.bigint().min(0n).max(MAX_UINT64))

/** RFC 3339 (any offset, any sub-second precision) or unix seconds; out: ISO 8601 UTC, ms precision. */
const timestamp = z
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

const id = z.string().min(1).max(256)
const text = z.string().max(4096)
const hex = z
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
const json = z.custom<JsonValue>(isBoundedJson, `not JSON, or deeper than ${MAX_JSON_DEPTH} levels or larger than ${MAX_JSON_NODES} values`)

/** Enum values matched case-insensitively (upstream's docs and serde disagree on casing). */
function caseless<const T extends readonly [string, ...string[]]>(values: T) {
  const byLower = new Map(values.map((v) => [v.toLowerCase(), v]))
  return z
    .string()
    .max(64)
    .transform((s) => byLower.get(s.toLowerCase()) ?? s)
    .pipe(z.enum(values))
}

// ---- shared shapes ----

const gpuInfo = z.object({
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

const hardware = z.object({
  gpus: z.array(gpuInfo).max(64),
  cpu: z.object({ model: z.string().max(256), cores: uint32, threads: uint32 }),
  memory_gb: nonNegative,
  storage_available_gb: nonNegative,
})

const capabilities = z.object({
  supported_frameworks: z.array(z.string().max(64)).max(64),
  max_batch_size: uint32,
  fp16_support: z.boolean(),
  int8_support: z.boolean(),
})

const location = z.object({ country: z.string().max(64), region: z.string().max(128), latency_to_platform_ms: nonNegative })
const availability = z.object({ hours_per_day: nonNegative.pipe(z.number().max(24)), reliability_score: nonNegative })

/** shardmesh's extension to AGENT_REGISTER: the agent's libp2p node. */
const mesh = z.object({
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
const served = z.object({
  /** Positions (prompt tokens and decode steps) run through the agent's layers. */
  tokens: uint64,
  /** Forward frames computed (a prefill chunk or one decode step each). */
  steps: uint64,
  /** Sessions opened on its shard. */
  sessions: uint64,
})

const pricing = z.object({ base_rate_usd_per_hour: decimal, gpu_multiplier: decimal, effective_rate: decimal })

const gpuStatus = z.object({
  index: uint32,
  utilization: decimal,
  memory_used_gb: decimal,
  memory_total_gb: decimal,
  temperature_c: decimal,
  power_draw_w: decimal,
  fan_speed_percent: decimal,
})

const progress = decimal.pipe(z.number().min(0).max(1))

// ---- payloads ----

/** The payload schema of each message type (the fields beside the envelope). */
export const orbanPayloadSchemas = {
  AUTH_CHALLENGE: z.object({ challenge: z.string().min(1).max(1024) }),
  AUTH_RESPONSE: z.object({ agent_id: id, signature: z.string().max(256), public_key: z.string().max(256) }),
  AUTH_SUCCESS: z.object({ jwt_token: z.string().max(8192), expires_in: uint64 }),
  AGENT_REGISTER: z.object({ agent_id: id, hardware, capabilities, location, availability, mesh: mesh.optional() }),
  REGISTER_ACK: z.object({ agent_id: id, status: z.string().max(64), pricing }),
  TASK_ASSIGN: z.object({
    task_id: id,
    job_id: id,
    priority: uint32,
    estimated_duration_sec: uint32,
    requirements: z.object({
      min_vram_gb: nonNegative,
      min_compute_capability: z.string().max(32),
      framework: z.string().max(64),
      fp16: z.boolean(),
    }),
    payload: z.object({
      model_url: text,
      model_hash: text,
      input_data_url: text,
      output_url: text,
      config: json.default(null),
    }),
    pricing,
  }),
  TASK_ACCEPT: z.object({ task_id: id, agent_id: id, gpu_allocated: uint32, estimated_completion: timestamp }),
  TASK_REJECT: z.object({ task_id: id, reason: z.string().max(256), details: text.default('') }),
  TASK_PROGRESS: z.object({
    task_id: id,
    progress,
    stage: z.string().max(256),
    metrics: z.object({
      gpu_utilization: decimal,
      memory_used_gb: decimal,
      throughput_tokens_per_sec: decimal.nullable().default(null),
    }),
    served: served.optional(),
  }),
  TASK_COMPLETE: z.object({
    task_id: id,
    result: z.object({ output_url: text, output_hash: text, execution_time_sec: nonNegative, gpu_time_sec: nonNegative }),
    proof_of_work: z.object({
      method: z.string().max(256),
      challenge_id: z.string().max(256),
      /** Text, or bytes as serde writes a Vec<u8> (an array of numbers), which become hex. */
      response: z.union([
        text,
        z
          .array(z.number().int().min(0).max(255))
          .max(2048)
          .transform((bytes) => bytes.map((b) => b.toString(16).padStart(2, '0')).join('')),
      ]),
      gpu_signature: text,
    }),
    metrics: z.object({ avg_gpu_utilization: decimal, peak_memory_gb: decimal, energy_kwh: decimal }),
  }),
  TASK_FAILED: z.object({
    task_id: id,
    error: z.object({ code: z.string().max(256), message: text, details: text.default('') }),
    partial_results: text.nullable().default(null),
  }),
  HEARTBEAT: z.object({
    agent_id: id,
    status: caseless(['idle', 'working', 'error', 'offline']),
    current_task_id: id.nullable().default(null),
    gpu_status: z.array(gpuStatus).max(64),
    uptime_sec: uint64,
    /** shardmesh's extension (upstream agents omit it): the node host's load, for the Oracle's topology and load-aware routes. */
    mesh_load: z.object({ active_sessions: uint32, queue_depth: uint32 }).optional(),
  }),
  METRICS_BATCH: z.object({
    agent_id: id,
    time_range: z.object({ start: timestamp, end: timestamp }),
    aggregated_metrics: z.object({
      tasks_completed: uint32,
      tasks_failed: uint32,
      total_gpu_hours: decimal,
      avg_gpu_utilization: decimal,
      total_energy_kwh: decimal,
      earnings_usd: decimal,
    }),
  }),
  EARNINGS_RECORD: z.object({
    task_id: id,
    earnings: z.object({
      gpu_hours: decimal,
      rate_usd_per_hour: decimal,
      amount_usd: decimal,
      bonus_multiplier: decimal,
      final_amount_usd: decimal,
    }),
    status: caseless(['Pending', 'Confirmed', 'Paid']),
    /** A date ("2024-11-21") or a timestamp, as the platform wrote it. */
    estimated_payout_date: z.string().max(64),
  }),
  PAYOUT_NOTIFICATION: z.object({
    payout_id: id,
    period: z.object({ start: z.string().max(64), end: z.string().max(64) }),
    summary: z.object({
      total_tasks: uint32,
      total_gpu_hours: decimal,
      gross_amount_usd: decimal,
      platform_fee_usd: decimal,
      net_amount_usd: decimal,
    }),
    payment_method: z.string().max(256),
    payment_address: z.string().max(256),
    status: caseless(['Processing', 'Completed', 'Failed']),
  }),
  POW_CHALLENGE: z.object({
    challenge_id: id,
    /** Hex of the nonce bytes (at most 128). */
    nonce: hex.pipe(z.string().min(2).max(256)),
    difficulty: z.number().int().min(0).max(256),
    deadline: timestamp,
  }),
  POW_RESPONSE: z.object({
    challenge_id: id,
    /** Hex of the winning SHA-256 hash (a 0x prefix is dropped, case folded). */
    response: hex.pipe(z.string().max(128)),
    computation_time_ms: uint64,
    gpu_signature: z.object({ device_uuid: z.string().max(256), cuda_version: z.string().max(64).nullable().default(null) }),
    /** The winning counter: ours, upstream omits it (then nothing can be verified). */
    counter: counter64.optional(),
  }),
  ERROR: z.object({ code: z.string().max(256), message: text, context: json.default(null), recoverable: z.boolean() }),
  STATE_SYNC: z.object({
    agent_id: id,
    last_heartbeat: timestamp,
    active_tasks: z.array(z.object({ task_id: id, progress, started_at: timestamp })).max(1024),
  }),
} as const satisfies Record<OrbanMessageType, z.ZodType>

type Schemas = typeof orbanPayloadSchemas
/** The payload of a message type as parsed (normalised). */
export type OrbanPayload<K extends OrbanMessageType> = z.output<Schemas[K]>
/** The payload of a message type as a sender may write it (decimals as strings, Dates, omitted optionals). */
export type OrbanPayloadInput<K extends OrbanMessageType> = z.input<Schemas[K]>
export type OrbanEnvelope = { message_id: string; timestamp: string }
export type OrbanMessageOf<K extends OrbanMessageType> = OrbanEnvelope & { type: K } & OrbanPayload<K>
/** Any parsed message: narrow it on `type`. */
export type OrbanMessage = { [K in OrbanMessageType]: OrbanMessageOf<K> }[OrbanMessageType]

export type OrbanGpuInfo = z.output<typeof gpuInfo>
export type OrbanHardware = z.output<typeof hardware>
export type OrbanCapabilities = z.output<typeof capabilities>
export type OrbanLocation = z.output<typeof location>
export type OrbanAvailability = z.output<typeof availability>
export type OrbanMeshInfo = z.output<typeof mesh>
export type OrbanServedCounters = z.output<typeof served>
export type OrbanPricing = z.output<typeof pricing>
export type OrbanGpuStatus = z.output<typeof gpuStatus>
export type OrbanAgentStatus = OrbanPayload<'HEARTBEAT'>['status']
export type OrbanEarningsStatus = OrbanPayload<'EARNINGS_RECORD'>['status']

export type OrbanMessageErrorCode = 'MALFORMED_JSON' | 'INVALID_ENVELOPE' | 'UNKNOWN_TYPE' | 'UNEXPECTED_TYPE' | 'INVALID_PAYLOAD'

export type ParseOrbanMessageOptions = {
  /**
   * The only type accepted: any other is refused (UNEXPECTED_TYPE) before its payload is looked
   * at, so a peer that has not authenticated gets no validation work beyond AUTH_RESPONSE's.
   */
  only?: OrbanMessageType
}

/** A frame that is not a valid Orban message; `code` says which layer failed. */
export class OrbanMessageError extends Error {
  readonly code: OrbanMessageErrorCode
  readonly messageType: string | undefined
  constructor(code: OrbanMessageErrorCode, message: string, messageType?: string) {
    super(message)
    this.name = 'OrbanMessageError'
    this.code = code
    this.messageType = messageType
  }
}

const envelopeSchema = z.object({
  message_id: z.uuidv4(),
  timestamp,
  type: z.string().max(64),
})

const TYPES = new Set<string>(ORBAN_MESSAGE_TYPES)

function describe(error: z.ZodError): string {
  return error.issues
    .slice(0, 3)
    .map((i) => `${i.path.length ? i.path.join('.') : '(root)'}: ${i.message}`)
    .join('; ')
}

/** Validates an already decoded frame (JSON object) as an Orban message. */
export function parseOrbanMessageObject(value: unknown, options: ParseOrbanMessageOptions = {}): OrbanMessage {
  const envelope = envelopeSchema.safeParse(value)
  if (!envelope.success) throw new OrbanMessageError('INVALID_ENVELOPE', `invalid envelope: ${describe(envelope.error)}`)
  const { type } = envelope.data
  if (!TYPES.has(type)) throw new OrbanMessageError('UNKNOWN_TYPE', `unknown message type ${JSON.stringify(type)}`, type)
  if (options.only !== undefined && type !== options.only) throw new OrbanMessageError('UNEXPECTED_TYPE', `expected ${options.only}, got ${type}`, type)
  const payload = orbanPayloadSchemas[type as OrbanMessageType].safeParse(value)
  if (!payload.success) throw new OrbanMessageError('INVALID_PAYLOAD', `invalid ${type}: ${describe(payload.error)}`, type)
  return { message_id: envelope.data.message_id, timestamp: envelope.data.timestamp, type, ...payload.data } as OrbanMessage
}

/** Parses one JSON text frame; throws OrbanMessageError with a code and a readable reason. */
export function parseOrbanMessage(frame: string, options: ParseOrbanMessageOptions = {}): OrbanMessage {
  let value: unknown
  try {
    value = JSON.parse(frame)
  } catch (e) {
    throw new OrbanMessageError('MALFORMED_JSON', `frame is not JSON: ${(e as Error).message}`)
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new OrbanMessageError('INVALID_ENVELOPE', 'frame is not a JSON object')
  return parseOrbanMessageObject(value, options)
}

export type CreateOrbanMessageOptions = {
  /** @default a fresh UUID v4 */
  messageId?: string
  /** @default now */
  timestamp?: Date
}

/** Builds a message (validated, normalised); a payload that breaks the schema throws OrbanMessageError. */
export function createOrbanMessage<K extends OrbanMessageType>(
  type: K,
  payload: OrbanPayloadInput<K>,
  options: CreateOrbanMessageOptions = {},
): OrbanMessageOf<K> {
  const parsed = orbanPayloadSchemas[type].safeParse(payload)
  if (!parsed.success) throw new OrbanMessageError('INVALID_PAYLOAD', `invalid ${type}: ${describe(parsed.error)}`, type)
  return {
    message_id: options.messageId ?? crypto.randomUUID(),
    timestamp: (options.timestamp ?? new Date()).toISOString(),
    type,
    ...parsed.data,
  } as unknown as OrbanMessageOf<K>
}

/** The JSON text of a message: envelope first, payload flattened beside it, u64 counters as numbers (strings past 2^53). */
export function serializeOrbanMessage(message: OrbanMessage): string {
  const { message_id, timestamp, type, ...payload } = message
  return JSON.stringify({ message_id, timestamp, type, ...payload }, (_key, value: unknown) =>
    typeof value === 'bigint' ? (value <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(value) : value.toString()) : value,
  )
}

/** One JSON text frame for `type` with `payload` (validated first). */
export function encodeOrbanMessage<K extends OrbanMessageType>(
  type: K,
  payload: OrbanPayloadInput<K>,
  options?: CreateOrbanMessageOptions,
): string {
  return serializeOrbanMessage(createOrbanMessage(type, payload, options) as unknown as OrbanMessage)
}
