import { fromBinary, fromJson, toBinary, toJson, type JsonObject, type JsonValue } from '@bufbuild/protobuf'
import { MessageSchema } from '../../proto/gen/orban_pb.js'
import { OrbanMessageError, parseOrbanMessageObject, type OrbanMessage, type OrbanMessageType, type ParseOrbanMessageOptions } from './orbanMessages.ts'

/**
 * Binary frames: an Orban message as the protobuf `orban.protocol.v1.Message` of proto/orban.proto.
 * Both directions go through the protobuf JSON mapping with proto field names, which are the JSON
 * wire's snake_case names, so the two encodings cannot drift apart field by field; the result is
 * validated by the same schemas as a text frame.
 */

// Year 9999, as for text frames.
const MAX_MS = 253_402_300_799_999

/** The protobuf bytes of a message. */
export function toProtobuf(message: OrbanMessage): Uint8Array {
  const { message_id, timestamp, type, ...payload } = message
  const ms = Date.parse(timestamp)
  const seconds = Math.floor(ms / 1000)
  const json: JsonObject = {
    message_id,
    timestamp: String(seconds),
    timestamp_nanos: (ms - seconds * 1000) * 1_000_000,
    [type.toLowerCase()]: JSON.parse(JSON.stringify(payload, (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : v))) as JsonValue,
  }
  return toBinary(MessageSchema, fromJson(MessageSchema, json))
}

/** Decodes protobuf bytes into a validated message; anything else is an OrbanMessageError. */
export function fromProtobuf(bytes: Uint8Array, options: ParseOrbanMessageOptions = {}): OrbanMessage {
  let decoded
  try {
    decoded = fromBinary(MessageSchema, bytes)
  } catch (e) {
    throw new OrbanMessageError('MALFORMED_JSON', `binary frame is not an orban.protocol.v1.Message: ${(e as Error).message}`)
  }
  const kind = decoded.payload.case
  if (kind === undefined) throw new OrbanMessageError('UNKNOWN_TYPE', 'binary frame carries no payload')
  // Refused before the JSON mapping and the payload schema run (the case is the camelCase type).
  if (options.only !== undefined && kind.toLowerCase() !== options.only.replace(/_/g, '').toLowerCase()) {
    const type = kind.replace(/[A-Z]/g, (c) => '_' + c).toUpperCase()
    throw new OrbanMessageError('UNEXPECTED_TYPE', `expected ${options.only}, got ${type}`, type)
  }
  const json = toJson(MessageSchema, decoded, { useProtoFieldName: true, alwaysEmitImplicit: true }) as JsonObject
  const type = Object.keys(json).find((k) => k !== 'message_id' && k !== 'timestamp' && k !== 'timestamp_nanos')
  if (type === undefined) throw new OrbanMessageError('UNKNOWN_TYPE', 'binary frame carries no payload')
  const payload = json[type] as JsonObject
  const ms = Number(decoded.timestamp) * 1000 + Math.floor(decoded.timestampNanos / 1_000_000)
  if (!(ms <= MAX_MS)) throw new OrbanMessageError('INVALID_ENVELOPE', 'binary frame timestamp is out of range')
  return parseOrbanMessageObject({
    ...payload,
    message_id: decoded.messageId,
    timestamp: new Date(ms).toISOString(),
    type: type.toUpperCase() as OrbanMessageType,
  }, options)
}
