import { activationType } from '../../shared/model/shardGraph.ts'
import { execFile } from 'node:child_process'
import { existsSync, readdirSync } from 'node:fs'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { availableParallelism, cpus, tmpdir, totalmem } from 'node:os'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import ort from 'onnxruntime-node'
import { fileModelSource } from '../model/fileModelSource.ts'
import { LLAMA_PRESETS, synthesizeLlama, type LlamaPreset } from '../model/synthesizeModel.ts'
import { nodeRuntime } from '../engine/nodeRuntime.ts'
import { fileShardCache } from '../engine/fileShardCache.ts'
import type { ModelSpec } from '../../shared/model/modelSpec.ts'
import { openSafetensors } from '../../shared/model/safetensors.ts'
import type { WeightFormat } from '../../shared/model/shardGraph.ts'
import { loadShards } from '../../shared/engine/loadShards.ts'
import type { ShardSession } from '../../shared/engine/shardSession.ts'
import { generate } from '../../shared/engine/generate.ts'
import { memchrMemoryScan, ortMemoryScan, type MemoryScanResult } from './memoryScan.ts'

export type BenchDevice = 'cpu' | 'webgpu'

export type EngineBenchOptions = {
  /** Model names: `docs-llama-7m` (shipped) or a synthesizer preset such as `tinyllama-1.1b`. */
  models: string[]
  /** Backends; `auto` is `cpu`, plus `webgpu` when a hardware adapter looks present. */
  devices: BenchDevice[] | 'auto'
  /** New tokens per decode run; by default 32, or 16 for models over 500 M parameters. */
  tokens?: number
  /** @default 32 */
  promptTokens?: number
  /** Timed generate() runs after a warm-up; the fastest prefill and decode count (the machine may be shared). @default 3 */
  runs?: number
  /** ORT intra-op threads of cpu sessions and of the memory scan. @default availableParallelism() */
  threads?: number
  /** Weight formats of the engine graph, a row each. @default ['float32', 'int4'] */
  weights?: WeightFormat[]
  /** Element type of synthesized checkpoints. @default 'float16' */
  synthDtype?: 'float16' | 'float32'
  /** Synthesized checkpoints live here, reused when present. @default <repo>/.cache/bench */
  cacheDir?: string
  /** Progress lines (stderr). */
  log?: (line: string) => void
}

export type EngineBenchRow = {
  model: string
  device: BenchDevice
  parameters: number
  /** Element type in the checkpoint, and the weight format of the ONNX graph the engine built from it. */
  checkpointDtype: string
  engineDtype: WeightFormat
  /** ORT intra-op threads (also used by the CPU-placed nodes of a webgpu session). */
  threads: number
  /** Load with an empty shard cache: read the checkpoint, build the graph, write it to the cache, open the session. */
  coldLoadMs: number
  /** Load of the same shard from the cache (a fresh process). */
  cachedLoadMs: number
  /** Bytes of the built shard's weights in the chosen format (its cached weights file). */
  shardWeightBytes: number
  /** Checkpoint bytes read per second by the cold load, and shard weight bytes per second by the cached one. */
  coldLoadGbPerS: number
  cachedLoadGbPerS: number
  /** Peak RSS of the cold-loading and the cache-loading process (getrusage), and peak / shardWeightBytes of the latter. */
  peakRssColdBytes: number
  peakRssCachedBytes: number
  peakRssRatio: number
  prefill: { tokens: number; ms: number; tokensPerS: number }
  decode: { tokens: number; msPerToken: number; tokensPerS: number }
  /** Weights a decode step reads: every matrix and norm, one embedding row. */
  weightBytesPerToken: number
  /** weightBytesPerToken / decode time. */
  decodeGbPerS: number
  /** decodeGbPerS / the memory scan's. */
  scanRatio: number
  /** Resident size once loaded from the cache. */
  rssAfterLoadBytes: number
}

export type EngineBenchReport = {
  machine: { cpu: string; cpus: number; memoryBytes: number; node: string; onnxruntime: string }
  threads: number
  /** `reference` is the faster of the two scans (each the best pass, before and after the engine runs). */
  memoryScan: { reference: MemoryScanResult; memchr: MemoryScanResult; ort: MemoryScanResult; before: number; after: number }
  rows: EngineBenchRow[]
}

const execFileAsync = promisify(execFile)
const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..')

/** The shipped default model. */
const DOCS_MODEL = 'docs-llama-7m'

/** A model's folder: the shipped one, or a synthesized preset (written on first use). */
export async function prepareModel(name: string, opts: Pick<EngineBenchOptions, 'synthDtype' | 'cacheDir' | 'log'>): Promise<string> {
  const shipped = join(REPO_ROOT, 'public/models', name)
  if (existsSync(join(shipped, 'config.json'))) return shipped
  if (!(name in LLAMA_PRESETS)) throw new Error(`unknown model "${name}": use ${DOCS_MODEL} or one of ${Object.keys(LLAMA_PRESETS).join(', ')}`)
  const dtype = opts.synthDtype ?? 'float16'
  const dir = join(opts.cacheDir ?? join(REPO_ROOT, '.cache/bench'), `${name}-${dtype}`)
  if (existsSync(join(dir, 'model.safetensors')) && existsSync(join(dir, 'generation_config.json'))) return dir
  opts.log?.(`synthesizing ${name} (${dtype}) into ${dir}`)
  const r = await synthesizeLlama({ dir, config: LLAMA_PRESETS[name as LlamaPreset], dtype, seed: 1, tokenizerFrom: join(REPO_ROOT, 'public/models', DOCS_MODEL) })
  opts.log?.(`  ${(r.bytes / 1e9).toFixed(2)} GB in ${(r.ms / 1000).toFixed(1)} s`)
  return dir
}

/** Parameters of a LLaMA-family spec (embeddings and LM head counted once each, tied or not). */
export function parameterCount(spec: ModelSpec): number {
  const H = spec.hiddenSize
  const q = spec.numHeads * spec.headDim
  const kv = spec.numKvHeads * spec.headDim
  const layer = H * (q + 2 * kv) + q * H + 3 * H * spec.intermediateSize + 2 * H
  return spec.vocabSize * H * (spec.tiedEmbeddings ? 1 : 2) + spec.numLayers * layer + H
}

/** Bytes of weights one decode step reads at `bytesPerElement`: all but the embedding table (one row). */
export function decodeWeightBytes(spec: ModelSpec, bytesPerElement: number): number {
  const embedding = spec.vocabSize * spec.hiddenSize
  const headShared = spec.tiedEmbeddings ? embedding : 0 // a tied table is read whole, as the LM head
  return (parameterCount(spec) - embedding + headShared + spec.hiddenSize) * bytesPerElement
}

/** WebGPU is worth timing only on a real adapter: a GPU device node, and no SwiftShader ICD forced. */
export function hardwareWebgpuLikely(): boolean {
  if (/swiftshader/i.test(process.env.VK_ICD_FILENAMES ?? '')) return false
  const dri = existsSync('/dev/dri') ? readdirSync('/dev/dri').some((f) => f.startsWith('renderD')) : false
  return dri || existsSync('/dev/nvidia0')
}

/** Deterministic prompt ids spread over the vocabulary (the special id 0 avoided). */
function promptIds(count: number, vocab: number): number[] {
  return Array.from({ length: count }, (_, i) => 1 + ((i * 7919 + 104729) % (vocab - 1)))
}

type Phase = 'cold' | 'cached'

/** What one load of a row measures, in its own process (so peak RSS is that load's own). */
export type EngineRowPhase = {
  phase: Phase
  loadMs: number
  peakRssBytes: number
  rssAfterLoadBytes: number
  shardWeightBytes: number
  checkpointBytes: number
  checkpointDtype: string
  spec: ModelSpec
  device: BenchDevice
  timing?: Timing
}

export type EngineRowParams = {
  dir: string
  device: BenchDevice
  weights: WeightFormat
  threads: number
  /** Shard cache folder: empty for the cold phase, filled by it for the cached one. */
  cacheDir: string
  phase: Phase
  promptTokens: number
  tokens: number
  runs: number
}

/** One phase of a row, in this process: load (cold or cached), and on the cached phase time generation. */
export async function engineRowPhase(p: EngineRowParams): Promise<EngineRowPhase> {
  const source = fileModelSource(p.dir)
  const index = await openSafetensors(source)
  const checkpointDtype = [...new Set([...index.tensors.values()].map((t) => t.dtype))].join('+')
  const checkpointBytes = [...index.tensors.values()].reduce((a, t) => a + t.end - t.start, 0)
  const cache = fileShardCache({ dir: p.cacheDir })
  const t0 = performance.now()
  const { spec, shards } = await loadShards({ source, runtime: nodeRuntime({ threads: p.threads }), device: p.device, weights: p.weights, cache })
  const loadMs = performance.now() - t0
  const session = shards[0]!
  const peakRssBytes = process.resourceUsage().maxRSS * 1024
  const rssAfterLoadBytes = process.memoryUsage().rss
  try {
    if (session.device !== p.device) throw new Error(`asked for ${p.device}, got ${session.device}`)
    const stored = await cache.get({ source, range: { start: 0, end: spec.numLayers }, weights: p.weights, int4AccuracyLevel: 4 })
    if (!stored) throw new Error('the shard is not in the cache after loading it')
    const timing = p.phase === 'cached' ? await timeGeneration(session, spec, p.promptTokens, p.tokens, p.runs) : undefined
    return { phase: p.phase, loadMs, peakRssBytes, rssAfterLoadBytes, shardWeightBytes: stored.weightBytes, checkpointBytes, checkpointDtype, spec, device: session.device as BenchDevice, timing }
  } finally {
    await session.dispose()
  }
}

/** A phase in a child process (`main.ts engine-row`). */
async function engineRowPhaseInChild(p: EngineRowParams): Promise<EngineRowPhase> {
  const main = join(dirname(fileURLToPath(import.meta.url)), 'main.ts')
  const { stdout } = await execFileAsync(process.execPath, [main, 'engine-row', JSON.stringify(p)], { maxBuffer: 1 << 24, env: process.env })
  return JSON.parse(stdout.trim().split('\n').at(-1)!) as EngineRowPhase
}

type Timing = { prefillMs: number; decodeMsPerToken: number }

async function timeGeneration(session: ShardSession, spec: ModelSpec, promptTokens: number, tokens: number, runs: number): Promise<Timing> {
  const stages = [session]
  await generate({ stages, inputIds: promptIds(8, spec.vocabSize), maxNewTokens: 3 }) // warm-up: first-run allocations
  const timings: Timing[] = []
  for (let i = 0; i < runs; i++) {
    const r = await generate({ stages, inputIds: promptIds(promptTokens, spec.vocabSize), maxNewTokens: tokens + 1 })
    timings.push(r)
  }
  return {
    prefillMs: Math.min(...timings.map((t) => t.prefillMs)),
    decodeMsPerToken: Math.min(...timings.map((t) => t.decodeMsPerToken)),
  }
}

async function benchOne(model: string, dir: string, device: BenchDevice, weights: WeightFormat, opts: EngineBenchOptions & { threads: number }): Promise<Omit<EngineBenchRow, 'scanRatio'>> {
  const cacheDir = await mkdtemp(join(tmpdir(), 'shardmesh-bench-shards-'))
  try {
    const base = { dir, device, weights, threads: opts.threads, cacheDir, promptTokens: opts.promptTokens ?? 32, runs: opts.runs ?? 3 }
    // Token count depends on the model's size, known once a phase has read its config.
    const cold = await engineRowPhaseInChild({ ...base, phase: 'cold', tokens: opts.tokens ?? 32 })
    const parameters = parameterCount(cold.spec)
    const tokens = opts.tokens ?? (parameters > 5e8 ? 16 : 32)
    opts.log?.(`  ${model} ${weights} on ${device}: cold load ${(cold.loadMs / 1000).toFixed(1)} s; loading from the cache, timing a ${base.promptTokens}-token prefill and ${tokens} decode steps`)
    const cached = await engineRowPhaseInChild({ ...base, phase: 'cached', tokens })
    const t = cached.timing!
    const { spec } = cached
    // A decode step reads every stored weight but the embedding table (in the activations' type), of which one row.
    const embeddingBytes = activationType(weights) === 'float16' ? 2 : 4
    const weightBytesPerToken = cached.shardWeightBytes - (spec.vocabSize - 1) * spec.hiddenSize * embeddingBytes
    return {
      model,
      device,
      parameters,
      checkpointDtype: cached.checkpointDtype,
      engineDtype: weights,
      threads: opts.threads,
      coldLoadMs: cold.loadMs,
      cachedLoadMs: cached.loadMs,
      shardWeightBytes: cached.shardWeightBytes,
      coldLoadGbPerS: cold.checkpointBytes / cold.loadMs / 1e6,
      cachedLoadGbPerS: cached.shardWeightBytes / cached.loadMs / 1e6,
      peakRssColdBytes: cold.peakRssBytes,
      peakRssCachedBytes: cached.peakRssBytes,
      peakRssRatio: cached.peakRssBytes / cached.shardWeightBytes,
      prefill: { tokens: base.promptTokens, ms: t.prefillMs, tokensPerS: (base.promptTokens * 1000) / t.prefillMs },
      decode: { tokens, msPerToken: t.decodeMsPerToken, tokensPerS: 1000 / t.decodeMsPerToken },
      weightBytesPerToken,
      decodeGbPerS: weightBytesPerToken / t.decodeMsPerToken / 1e6,
      rssAfterLoadBytes: cached.rssAfterLoadBytes,
    }
  } finally {
    await rm(cacheDir, { recursive: true, force: true })
  }
}

export type ScanPair = { memchr: MemoryScanResult; ort: MemoryScanResult }

/** Both memory scans, in this process. */
export async function scanPair(threads: number): Promise<ScanPair> {
  const memchr = await memchrMemoryScan({ threads })
  return { memchr, ort: await ortMemoryScan({ threads }) }
}

/** Both memory scans in a child process (`main.ts scan`), so their 1 GiB buffers stay out of this process's peak RSS. */
async function scanPairInChild(threads: number): Promise<ScanPair> {
  const main = join(dirname(fileURLToPath(import.meta.url)), 'main.ts')
  const { stdout } = await execFileAsync(process.execPath, [main, 'scan', '--threads', String(threads)], { maxBuffer: 1 << 20 })
  return JSON.parse(stdout) as ScanPair
}

/**
 * Times the shard engine (whole model as one shard) per model and backend: load, prefill and
 * decode throughput, and the weight bandwidth decode reaches against a read-only memory scan
 * with the same number of threads, measured before and after the engine runs (in child processes,
 * so the scans' buffers stay out of the engine's peak RSS).
 */
export async function runEngineBench(options: EngineBenchOptions): Promise<EngineBenchReport> {
  const threads = options.threads ?? availableParallelism()
  const opts = { ...options, threads }
  const devices: BenchDevice[] = options.devices === 'auto' ? (hardwareWebgpuLikely() ? ['cpu', 'webgpu'] : ['cpu']) : options.devices
  const dirs = new Map<string, string>()
  for (const m of options.models) dirs.set(m, await prepareModel(m, options))
  options.log?.(`memory scan (${threads} threads)`)
  const before = await scanPairInChild(threads)
  const rows: Array<Omit<EngineBenchRow, 'scanRatio'>> = []
  const formats = options.weights ?? ['float32', 'int4']
  for (const m of options.models) for (const d of devices) for (const w of formats) rows.push(await benchOne(m, dirs.get(m)!, d, w, opts))
  options.log?.('memory scan again')
  const after = await scanPairInChild(threads)
  const best = (...scans: MemoryScanResult[]) => scans.reduce((a, b) => (b.gbPerS > a.gbPerS ? b : a))
  const memchr = best(before.memchr, after.memchr)
  const ortScan = best(before.ort, after.ort)
  const reference = best(memchr, ortScan)
  return {
    machine: {
      cpu: cpus()[0]?.model ?? 'unknown',
      cpus: availableParallelism(),
      memoryBytes: totalmem(),
      node: process.version,
      onnxruntime: await ortVersion(),
    },
    threads,
    memoryScan: { reference, memchr, ort: ortScan, before: best(before.memchr, before.ort).gbPerS, after: best(after.memchr, after.ort).gbPerS },
    rows: rows.map((r) => ({ ...r, scanRatio: r.decodeGbPerS / reference.gbPerS })),
  }
}

async function ortVersion(): Promise<string> {
  const env = ort.env as { versions?: { node?: string } }
  if (env.versions?.node) return env.versions.node
  const pkg = JSON.parse(await readFile(join(REPO_ROOT, 'node_modules/onnxruntime-node/package.json'), 'utf8')) as { version: string }
  return pkg.version
}

const fmt = (n: number, digits = 1) => n.toFixed(digits)
const gb = (bytes: number) => (bytes / 1e9).toFixed(2)

/** The report as a plain-text table. */
export function formatEngineTable(report: EngineBenchReport): string {
  const head = ['model', 'device', 'params', 'ckpt→engine', 'thr', 'load cold s', 'load cached s', 'cached GB/s', 'weights GB', 'peak RSS GB', 'RSS/weights', 'prefill tok/s', 'decode tok/s', 'ms/tok', 'GB/tok', 'decode GB/s', 'scan GB/s', 'ratio']
  const scan = report.memoryScan.reference.gbPerS
  const body = report.rows.map((r) => [
    r.model,
    r.device,
    `${fmt(r.parameters / 1e6, 0)} M`,
    `${r.checkpointDtype}→${r.engineDtype}`,
    String(r.threads),
    fmt(r.coldLoadMs / 1000, 2),
    fmt(r.cachedLoadMs / 1000, 2),
    fmt(r.cachedLoadGbPerS, 2),
    gb(r.shardWeightBytes),
    `${gb(r.peakRssCachedBytes)} (cold ${gb(r.peakRssColdBytes)})`,
    fmt(r.peakRssRatio, 2),
    `${fmt(r.prefill.tokensPerS)} (${r.prefill.tokens})`,
    `${fmt(r.decode.tokensPerS, 2)} (${r.decode.tokens})`,
    fmt(r.decode.msPerToken, 1),
    gb(r.weightBytesPerToken),
    fmt(r.decodeGbPerS, 2),
    fmt(scan, 2),
    `${fmt(r.scanRatio * 100, 0)}%`,
  ])
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((row) => row[i]!.length)))
  const line = (cells: string[]) => cells.map((c, i) => c.padEnd(widths[i]!)).join('  ').trimEnd()
  const s = report.memoryScan
  return [
    line(head),
    line(widths.map((w) => '-'.repeat(w))),
    ...body.map(line),
    '',
    `memory scan, ${report.threads} threads, ${gb(s.reference.bytes)} GB, best pass: ${fmt(s.reference.gbPerS, 2)} GB/s (the faster of the two below; before the engine runs ${fmt(s.before, 2)}, after ${fmt(s.after, 2)})`,
    `  ${fmt(s.memchr.gbPerS, 2)} GB/s  ${s.memchr.method}`,
    `  ${fmt(s.ort.gbPerS, 2)} GB/s  ${s.ort.method}`,
    `machine: ${report.machine.cpu}, ${report.machine.cpus} cpus, ${gb(report.machine.memoryBytes)} GB, node ${report.machine.node}, onnxruntime-node ${report.machine.onnxruntime}`,
  ].join('\n')
}
