import { recoverMessageAddress, type Address, type Hex, type LocalAccount } from 'viem'

/** Fields of `POST /api/v1/pipeline/register` that the agent signs, in the order it signs them. */
export type RegisterSignedFields = {
  address: string
  grpcEndpoint: string
  httpEndpoint: string
  model: string
  ramMb: number
  device: string
  vramMb: number
  timestamp: number
}

/** Fields of `POST /api/v1/pipeline/ready` that the agent signs. */
export type ReadySignedFields = { address: string; model: string; timestamp: number }

/** Fields of `POST /api/v1/metrics/report` that the agent signs (`agent` is the body's `wallet`). */
export type MetricsSignedFields = { agent: string; processed_tokens: number; timestamp: number }

/** Who signs: a viem local account, or an address with a function doing EIP-191 `personal_sign` (a wallet). */
export type PlumiseSigner = LocalAccount | { address: Address; personalSign: (message: string) => Promise<Hex> }

export class PlumiseMessageError extends Error {
  constructor(message: string) {
    super(message)
    this.name = 'PlumiseMessageError'
  }
}

type JsonScalar = string | number | boolean | null

const SHORT_ESCAPES: Record<number, string> = { 0x22: '\\"', 0x5c: '\\\\', 0x08: '\\b', 0x0c: '\\f', 0x0a: '\\n', 0x0d: '\\r', 0x09: '\\t' }

/** A string as Python's `json.dumps` writes it with `ensure_ascii=True`: everything outside ' '..'~' escaped. */
function pythonJsonString(s: string): string {
  let out = '"'
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i)
    const short = SHORT_ESCAPES[c]
    if (short) out += short
    // UTF-16 code units are what Python escapes too (astral characters as surrogate pairs).
    else if (c >= 0x20 && c <= 0x7e) out += s[i]
    else out += `\\u${c.toString(16).padStart(4, '0')}`
  }
  return `${out}"`
}

function pythonJsonScalar(key: string, v: JsonScalar): string {
  if (typeof v === 'string') return pythonJsonString(v)
  if (typeof v === 'boolean') return v ? 'true' : 'false'
  if (v === null) return 'null'
  // Python writes floats its own way (1.0, 1e+16): the signed fields are integers, so only those are allowed.
  if (!Number.isSafeInteger(v)) throw new PlumiseMessageError(`"${key}" must be a safe integer to be signed, got ${v}`)
  return String(v)
}

/** Python orders strings by code point; JavaScript's `<` by UTF-16 unit (they differ past U+D7FF). */
function byCodePoint(a: string, b: string): number {
  const x = [...a]
  const y = [...b]
  for (let i = 0; i < Math.min(x.length, y.length); i++) {
    const d = x[i]!.codePointAt(0)! - y[i]!.codePointAt(0)!
    if (d !== 0) return d
  }
  return x.length - y.length
}

/**
 * `json.dumps(obj, separators=(",", ":"))` of a flat object, byte for byte as the upstream Python
 * agent makes it (keys in insertion order, or sorted with `sortKeys` like `sort_keys=True`).
 */
export function pythonCompactJson(obj: Readonly<Record<string, JsonScalar>>, options: { sortKeys?: boolean } = {}): string {
  const keys = Object.keys(obj)
  if (options.sortKeys) keys.sort(byCodePoint)
  return `{${keys.map((k) => `${pythonJsonString(k)}:${pythonJsonScalar(k, obj[k]!)}`).join(',')}}`
}

/** The exact string a register call signs. */
export function registerMessage(f: RegisterSignedFields): string {
  return pythonCompactJson({
    address: f.address,
    grpcEndpoint: f.grpcEndpoint,
    httpEndpoint: f.httpEndpoint,
    model: f.model,
    ramMb: f.ramMb,
    device: f.device,
    vramMb: f.vramMb,
    timestamp: f.timestamp,
  })
}

/** The exact string a ready call signs. */
export function readyMessage(f: ReadySignedFields): string {
  return pythonCompactJson({ address: f.address, model: f.model, timestamp: f.timestamp })
}

/** The exact string a metrics report signs (the agent's `sign_payload`: keys sorted). */
export function metricsMessage(f: MetricsSignedFields): string {
  return pythonCompactJson({ agent: f.agent, processed_tokens: f.processed_tokens, timestamp: f.timestamp }, { sortKeys: true })
}

/**
 * The same fields as JavaScript's `JSON.stringify` writes them (non-ASCII left raw): what the
 * upstream TypeScript Oracle verifies, so what JavaScript agents sign. Verifiers accept both.
 */
export function javascriptMessage(fields: Readonly<Record<string, JsonScalar>>, options: { sortKeys?: boolean } = {}): string {
  const keys = Object.keys(fields)
  if (options.sortKeys) keys.sort()
  return JSON.stringify(Object.fromEntries(keys.map((k) => [k, fields[k]])))
}

/** EIP-191 `personal_sign` of the message's UTF-8 bytes: 0x-prefixed 65-byte hex. */
export async function signPlumiseMessage(signer: PlumiseSigner, message: string): Promise<Hex> {
  return 'personalSign' in signer ? signer.personalSign(message) : signer.signMessage({ message })
}

export const SIGNATURE_PATTERN = /^0x[0-9a-fA-F]{130}$/

export type RecoverSignerResult =
  | { ok: true; signer: Address }
  | { ok: false; reason: 'malformed' | 'mismatch'; /** The address the first candidate recovers to, when it recovers at all. */ recovered?: Address }

/**
 * Recovers the signer of `signature` over each candidate message (the Python form first) and
 * says whether one of them is `expected` (compared case-insensitively).
 */
export async function recoverPlumiseSigner(params: { messages: readonly string[]; signature: string; expected: string }): Promise<RecoverSignerResult> {
  if (!SIGNATURE_PATTERN.test(params.signature)) return { ok: false, reason: 'malformed' }
  const want = params.expected.toLowerCase()
  let first: Address | undefined
  for (const message of new Set(params.messages)) {
    let signer: Address
    try {
      signer = await recoverMessageAddress({ message, signature: params.signature as Hex })
    } catch {
      return { ok: false, reason: 'malformed' }
    }
    first ??= signer
    if (signer.toLowerCase() === want) return { ok: true, signer }
  }
  return { ok: false, reason: 'mismatch', recovered: first }
}
