import { PlumiseTensorError } from './plumiseTensorError.ts'

/**
 * A pickle reader that builds a value tree instead of running code: globals become
 * `PickleGlobal` markers (only those on an allow-list), REDUCE becomes a `PickleCall`, a
 * persistent id a `PicklePersistentId`. The caller interprets the tree. This is the
 * `torch.load(weights_only=True)` idea: nothing from the archive can name arbitrary callables.
 */
export type PickleValue =
  | null
  | boolean
  | number
  | bigint
  | string
  | Uint8Array
  | PickleValue[]
  | Map<PickleValue, PickleValue>
  | PickleGlobal
  | PickleCall
  | PicklePersistentId

export class PickleGlobal {
  readonly module: string
  readonly name: string
  constructor(module: string, name: string) {
    this.module = module
    this.name = name
  }
  get qualified(): string {
    return `${this.module}.${this.name}`
  }
}

export class PickleCall {
  readonly fn: PickleGlobal
  readonly args: PickleValue[]
  constructor(fn: PickleGlobal, args: PickleValue[]) {
    this.fn = fn
    this.args = args
  }
}

export class PicklePersistentId {
  readonly id: PickleValue
  constructor(id: PickleValue) {
    this.id = id
  }
}

export class PickleRefusedError extends PlumiseTensorError {
  constructor(message: string) {
    super(message)
    this.name = 'PickleRefusedError'
  }
}

const MARK = Symbol('mark')
type Slot = PickleValue | typeof MARK

export type UnpickleOptions = {
  /** `module.name` of every global the pickle may name. */
  allowedGlobals: ReadonlySet<string>
  /** @default 10_000 */
  maxStack?: number
}

export function restrictedUnpickle(bytes: Uint8Array, opts: UnpickleOptions): PickleValue {
  const maxStack = opts.maxStack ?? 10_000
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  const latin1 = new TextDecoder('latin1')
  const utf8 = new TextDecoder('utf-8', { fatal: true })
  const stack: Slot[] = []
  const memo = new Map<number, PickleValue>()
  let p = 0

  const refuse = (why: string): never => {
    throw new PickleRefusedError(`pickle refused at byte ${p}: ${why}`)
  }
  const need = (n: number) => {
    if (n < 0 || p + n > bytes.length) refuse(`truncated (needs ${n} more bytes)`)
  }
  const u8 = () => (need(1), bytes[p++]!)
  const take = (n: number) => {
    need(n)
    const out = bytes.subarray(p, p + n)
    p += n
    return out
  }
  const line = () => {
    const nl = bytes.indexOf(0x0a, p)
    if (nl < 0 || nl - p > 256) refuse('unterminated line')
    const s = latin1.decode(bytes.subarray(p, nl))
    p = nl + 1
    return s
  }
  const push = (x: Slot) => {
    if (stack.length >= maxStack) refuse(`stack deeper than ${maxStack}`)
    stack.push(x)
  }
  const pop = (): PickleValue => {
    const x = stack.pop()
    if (x === undefined) refuse('stack underflow')
    if (x === MARK) refuse('unexpected mark')
    return x as PickleValue
  }
  const popMark = (): PickleValue[] => {
    const i = stack.lastIndexOf(MARK)
    if (i < 0) refuse('no mark on the stack')
    const items = stack.splice(i) as PickleValue[]
    items.shift()
    return items
  }
  const top = (): PickleValue => {
    const x = stack[stack.length - 1]
    if (x === undefined || x === MARK) refuse('nothing to modify on the stack')
    return x as PickleValue
  }
  const global = (module: string, name: string) => {
    const g = new PickleGlobal(module, name)
    if (!opts.allowedGlobals.has(g.qualified)) {
      refuse(`global ${g.qualified} is not allowed (only ${[...opts.allowedGlobals].join(', ')}, as torch.load(weights_only=True) would accept)`)
    }
    push(g)
  }
  const memoize = (key: number) => {
    if (memo.size >= maxStack && !memo.has(key)) refuse('memo too large')
    memo.set(key, top())
  }
  const get = (key: number) => {
    if (!memo.has(key)) refuse(`memo key ${key} unset`)
    push(memo.get(key)!)
  }

  for (;;) {
    const op = u8()
    switch (op) {
      case 0x80: // PROTO
        if (u8() > 5) refuse('unknown pickle protocol')
        break
      case 0x95: // FRAME
        take(8)
        break
      case 0x63: // GLOBAL
        global(line(), line())
        break
      case 0x93: { // STACK_GLOBAL
        const name = pop()
        const module = pop()
        if (typeof name !== 'string' || typeof module !== 'string') refuse('STACK_GLOBAL needs two strings')
        global(module as string, name as string)
        break
      }
      case 0x71: memoize(u8()); break // BINPUT
      case 0x72: need(4); memoize(v.getUint32(p, true)); p += 4; break // LONG_BINPUT
      case 0x94: memoize(memo.size); break // MEMOIZE
      case 0x68: get(u8()); break // BINGET
      case 0x6a: need(4); get(v.getUint32(p, true)); p += 4; break // LONG_BINGET
      case 0x28: push(MARK); break
      case 0x74: push(popMark()); break // TUPLE
      case 0x29: push([]); break // EMPTY_TUPLE
      case 0x85: push([pop()]); break // TUPLE1
      case 0x86: { const b = pop(); const a = pop(); push([a, b]); break } // TUPLE2
      case 0x87: { const c = pop(); const b = pop(); const a = pop(); push([a, b, c]); break } // TUPLE3
      case 0x5d: push([]); break // EMPTY_LIST
      case 0x61: { const x = pop(); const l = top(); if (!Array.isArray(l)) refuse('APPEND to a non-list'); (l as PickleValue[]).push(x); break }
      case 0x65: { const xs = popMark(); const l = top(); if (!Array.isArray(l)) refuse('APPENDS to a non-list'); (l as PickleValue[]).push(...xs); break }
      case 0x7d: push(new Map()); break // EMPTY_DICT
      case 0x73: { const val = pop(); const key = pop(); const d = top(); if (!(d instanceof Map)) refuse('SETITEM on a non-dict'); (d as Map<PickleValue, PickleValue>).set(key, val); break }
      case 0x75: { // SETITEMS
        const xs = popMark()
        const d = top()
        if (!(d instanceof Map) || xs.length % 2) refuse('SETITEMS on a non-dict or an odd count')
        for (let i = 0; i < xs.length; i += 2) (d as Map<PickleValue, PickleValue>).set(xs[i]!, xs[i + 1]!)
        break
      }
      case 0x58: { need(4); const n = v.getUint32(p, true); p += 4; push(decodeUtf8(utf8, take(n), refuse)); break } // BINUNICODE
      case 0x8c: { const n = u8(); push(decodeUtf8(utf8, take(n), refuse)); break } // SHORT_BINUNICODE
      case 0x55: { const n = u8(); push(latin1.decode(take(n))); break } // SHORT_BINSTRING
      case 0x54: { need(4); const n = v.getInt32(p, true); p += 4; push(latin1.decode(take(n))); break } // BINSTRING
      case 0x43: { const n = u8(); push(take(n).slice()); break } // SHORT_BINBYTES
      case 0x42: { need(4); const n = v.getUint32(p, true); p += 4; push(take(n).slice()); break } // BINBYTES
      case 0x4a: need(4); push(v.getInt32(p, true)); p += 4; break // BININT
      case 0x4b: push(u8()); break // BININT1
      case 0x4d: need(2); push(v.getUint16(p, true)); p += 2; break // BININT2
      case 0x8a: { // LONG1
        const n = u8()
        if (n > 8) refuse('integer wider than 64 bits')
        const b = take(n)
        let x = 0n
        for (let i = n - 1; i >= 0; i--) x = (x << 8n) | BigInt(b[i]!)
        if (n && b[n - 1]! & 0x80) x -= 1n << BigInt(8 * n)
        push(x >= BigInt(Number.MIN_SAFE_INTEGER) && x <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(x) : x)
        break
      }
      case 0x47: need(8); push(v.getFloat64(p, false)); p += 8; break // BINFLOAT
      case 0x4e: push(null); break // NONE
      case 0x88: push(true); break // NEWTRUE
      case 0x89: push(false); break // NEWFALSE
      case 0x51: push(new PicklePersistentId(pop())); break // BINPERSID
      case 0x52: { // REDUCE
        const args = pop()
        const fn = pop()
        if (!(fn instanceof PickleGlobal)) refuse('REDUCE of something that is not an allowed global')
        if (!Array.isArray(args)) refuse('REDUCE arguments are not a tuple')
        push(new PickleCall(fn as PickleGlobal, args as PickleValue[]))
        break
      }
      case 0x2e: { // STOP
        const result = pop()
        if (stack.length) refuse('values left on the stack at STOP')
        if (p !== bytes.length) refuse('bytes after STOP')
        return result
      }
      default:
        refuse(`opcode 0x${op.toString(16)} is not allowed`)
    }
  }
}

function decodeUtf8(dec: TextDecoder, b: Uint8Array, refuse: (why: string) => never): string {
  try {
    return dec.decode(b)
  } catch {
    return refuse('string is not UTF-8')
  }
}
