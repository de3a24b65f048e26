import { z } from 'zod'
import { availability, capabilities, gpuInfo, gpuStatus, hardware, location, mesh, pricing, served, timestamp } from './orbanFieldSchemas.ts'
import { orbanEarningsPayloads } from './orbanEarningsMessages.ts'
import { orbanPowPayloads } from './orbanPowMessages.ts'
import { orbanSessionPayloads } from './orbanSessionMessages.ts'
import { orbanTaskPayloads } from './orbanTaskMessages.ts'
import { orbanTelemetryPayloads } from './orbanTelemetryMessages.ts'

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

export { DECIMAL_PATTERN, type JsonValue } from './orbanFieldSchemas.ts'

// ---- payloads ----

/** The payload schema of each message type (the fields beside the envelope), one file per group of messages. */
export const orbanPayloadSchemas = {
  ...orbanSessionPayloads,
  ...orbanTaskPayloads,
  ...orbanTelemetryPayloads,
  ...orbanEarningsPayloads,
  ...orbanPowPayloads,
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
