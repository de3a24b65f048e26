/**
 * A strict parser of the Prometheus text exposition format (version 0.0.4), for tests: every line
 * must be a HELP, a TYPE or a sample of a family already typed; names, label syntax and escapes,
 * values, histogram series (`le` buckets ascending and cumulative, `+Inf` equal to `_count`) and
 * duplicate series are checked. Anything else throws PromTextError with the line number.
 */

export type PromSample = { name: string; labels: Record<string, string>; value: number }
export type PromFamily = { name: string; type: 'counter' | 'gauge' | 'histogram' | 'summary' | 'untyped'; help: string; samples: PromSample[] }

export class PromTextError extends Error {
  constructor(line: number, message: string) {
    super(`line ${line}: ${message}`)
    this.name = 'PromTextError'
  }
}

const METRIC_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/
const TYPES = new Set(['counter', 'gauge', 'histogram', 'summary', 'untyped'])

function parseValue(s: string, line: number): number {
  if (s === '+Inf' || s === 'Inf') return Infinity
  if (s === '-Inf') return -Infinity
  if (s === 'NaN') return NaN
  if (!/^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/.test(s)) throw new PromTextError(line, `bad value ${JSON.stringify(s)}`)
  return Number(s)
}

/** Reads `{a="x",b="y"}` from `text` at `i`; returns the labels and the index after `}`. */
function parseLabels(text: string, i: number, line: number): [Record<string, string>, number] {
  const labels: Record<string, string> = {}
  i++ // '{'
  while (text[i] !== '}') {
    const eq = text.indexOf('=', i)
    if (eq < 0) throw new PromTextError(line, 'label without =')
    const name = text.slice(i, eq)
    if (!LABEL_NAME.test(name)) throw new PromTextError(line, `bad label name ${JSON.stringify(name)}`)
    if (name in labels) throw new PromTextError(line, `label ${name} twice`)
    if (text[eq + 1] !== '"') throw new PromTextError(line, 'label value not quoted')
    let j = eq + 2
    let value = ''
    for (;;) {
      const c = text[j]
      if (c === undefined) throw new PromTextError(line, 'unterminated label value')
      if (c === '"') break
      if (c === '\\') {
        const n = text[j + 1]
        if (n === '\\') value += '\\'
        else if (n === '"') value += '"'
        else if (n === 'n') value += '\n'
        else throw new PromTextError(line, `bad escape \\${n}`)
        j += 2
        continue
      }
      if (c === '\n') throw new PromTextError(line, 'newline in a label value')
      value += c
      j++
    }
    labels[name] = value
    i = j + 1
    if (text[i] === ',') i++
    else if (text[i] !== '}') throw new PromTextError(line, `expected , or } after label ${name}`)
  }
  return [labels, i + 1]
}

const seriesKey = (name: string, labels: Record<string, string>) =>
  name + JSON.stringify(Object.entries(labels).sort(([a], [b]) => (a < b ? -1 : 1)))

export function parsePromText(text: string): Map<string, PromFamily> {
  const families = new Map<string, PromFamily>()
  const seen = new Set<string>()
  if (text.length && !text.endsWith('\n')) throw new PromTextError(text.split('\n').length, 'the exposition must end with a newline')
  const lines = text.split('\n')
  lines.forEach((raw, idx) => {
    const n = idx + 1
    if (raw === '') return
    if (raw.startsWith('#')) {
      const m = /^# (HELP|TYPE) (\S+) ?(.*)$/.exec(raw)
      if (!m) return // a plain comment
      const [, kind, name, rest] = m as unknown as [string, string, string, string]
      if (!METRIC_NAME.test(name)) throw new PromTextError(n, `bad metric name ${name}`)
      const family = families.get(name) ?? { name, type: 'untyped' as const, help: '', samples: [] }
      if (kind === 'TYPE') {
        if (!TYPES.has(rest)) throw new PromTextError(n, `bad type ${rest}`)
        if (family.samples.length) throw new PromTextError(n, `TYPE of ${name} after its samples`)
        family.type = rest as PromFamily['type']
      } else family.help = rest.replace(/\\n/g, '\n').replace(/\\\\/g, '\\')
      families.set(name, family)
      return
    }
    const nameEnd = raw.search(/[{ ]/)
    if (nameEnd <= 0) throw new PromTextError(n, `not a sample: ${raw.slice(0, 80)}`)
    const name = raw.slice(0, nameEnd)
    if (!METRIC_NAME.test(name)) throw new PromTextError(n, `bad metric name ${name}`)
    let labels: Record<string, string> = {}
    let i = nameEnd
    if (raw[i] === '{') [labels, i] = parseLabels(raw, i, n)
    if (raw[i] !== ' ') throw new PromTextError(n, 'expected a space before the value')
    const parts = raw.slice(i + 1).split(' ')
    if (parts.length < 1 || parts.length > 2 || parts[0] === '') throw new PromTextError(n, 'expected a value and an optional timestamp')
    const value = parseValue(parts[0]!, n)
    if (parts[1] !== undefined && !/^-?\d+$/.test(parts[1])) throw new PromTextError(n, `bad timestamp ${parts[1]}`)
    const base = [name, name.replace(/_(bucket|sum|count)$/, '')].find((b) => families.has(b))
    if (!base) throw new PromTextError(n, `sample ${name} of no declared family`)
    const family = families.get(base)!
    if (family.type === 'histogram' && name === base) throw new PromTextError(n, `histogram ${base} sample without _bucket/_sum/_count`)
    if (name.endsWith('_bucket') && family.type === 'histogram' && labels.le === undefined) throw new PromTextError(n, 'bucket without le')
    const key = seriesKey(name, labels)
    if (seen.has(key)) throw new PromTextError(n, `series ${key} twice`)
    seen.add(key)
    family.samples.push({ name, labels, value })
  })
  for (const f of families.values()) if (f.type === 'histogram') checkHistogram(f)
  return families
}

function checkHistogram(f: PromFamily) {
  const groups = new Map<string, { buckets: Array<[number, number]>; count?: number }>()
  for (const s of f.samples) {
    const { le, ...rest } = s.labels
    const key = seriesKey('', rest)
    const g = groups.get(key) ?? { buckets: [] }
    groups.set(key, g)
    if (s.name.endsWith('_bucket')) g.buckets.push([parseValue(le!, 0), s.value])
    else if (s.name.endsWith('_count')) g.count = s.value
  }
  for (const [key, g] of groups) {
    for (let k = 1; k < g.buckets.length; k++) {
      if (!(g.buckets[k]![0] > g.buckets[k - 1]![0])) throw new PromTextError(0, `${f.name}${key}: le not ascending`)
      if (g.buckets[k]![1] < g.buckets[k - 1]![1]) throw new PromTextError(0, `${f.name}${key}: buckets not cumulative`)
    }
    const inf = g.buckets.at(-1)
    if (!inf || inf[0] !== Infinity) throw new PromTextError(0, `${f.name}${key}: no +Inf bucket`)
    if (g.count !== inf[1]) throw new PromTextError(0, `${f.name}${key}: +Inf bucket ${inf[1]} is not _count ${g.count}`)
  }
}

/** The value of one series (labels matched exactly, ignoring order); undefined when absent. */
export function promValue(families: Map<string, PromFamily>, name: string, labels: Record<string, string> = {}): number | undefined {
  const base = [name, name.replace(/_(bucket|sum|count)$/, '')].find((b) => families.has(b))
  const key = seriesKey(name, labels)
  return base === undefined ? undefined : families.get(base)!.samples.find((s) => seriesKey(s.name, s.labels) === key)?.value
}
