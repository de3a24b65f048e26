import { WEIGHT_FORMATS, type WeightFormat } from '../../shared/model/shardGraph.ts'
const isWeightFormat = (w: string): w is WeightFormat => (WEIGHT_FORMATS as readonly string[]).includes(w)
import { parseArgs } from 'node:util'
import { LLAMA_PRESETS, synthesizeLlama, type LlamaPreset } from '../model/synthesizeModel.ts'
import { engineRowPhase, formatEngineTable, runEngineBench, scanPair, type BenchDevice, type EngineRowParams } from './engineBench.ts'
import { formatMeshTable, runMeshBench } from './meshBench.ts'
import { formatChainTable, runChainBench } from './chainBench.ts'
import { formatOracleTable, runOracleBench } from './oracleBench.ts'
import { formatGrpcTable, runGrpcBench } from './grpcBench.ts'
import { formatSoakTable, runSoak } from './soakBench.ts'
import { formatFarmTable, runFarmBench } from './farmBench.ts'
import { formatVerifyTable, runVerifyBench } from './verifyBench.ts'
import { formatLoadTable, runLoadBench, type LoadMode } from './loadBench.ts'
import { availableParallelism } from 'node:os'

const USAGE = `usage:
  npm run bench -- engine [--models docs-llama-7m,tinyllama-1.1b] [--devices cpu[,webgpu]] [--weights float32,float16,int4,int4-f16] [--tokens N]
                          [--prompt N] [--runs N] [--threads N] [--synth-dtype float16|float32] [--json]
  npm run bench -- mesh [--models docs-llama-7m,tinyllama-1.1b] [--hosts 3] [--tokens N] [--prompt N] [--weights float32|int4] [--json]
  npm run bench -- load [--models docs-llama-7m,tinyllama-1.1b] [--clients 1,4,16] [--pipelines 1,2] [--modes unbatched,batched] [--repeats N] [--tokens N] [--prompt N]
                        [--tokens 16] [--prompt 16] [--weights float32|int4] [--json]
  npm run bench -- grpc [--models docs-llama-7m] [--contexts 32,256] [--tokens N] [--dtype float32|float16|bfloat16] [--json]
  npm run bench -- scan [--threads N]
  npm run bench -- farm [--workers 3] [--gpu off|swiftshader|auto] [--completions 3] [--tokens 32] [--json]
  npm run bench -- chain [--json]
  npm run bench -- verify [--model docs-llama-7m|tinyllama-1.1b] [--weights float32|int4] [--rounds 40] [--tokens 48] [--rate 0.03] [--json]
  npm run bench -- oracle [--agents 1000] [--events N] [--seed N] [--replicas 2] [--json]
  npm run bench -- soak [--minutes 15] [--clients 4] [--kill-every 90] [--replace-after S] [--hosts 4] [--replicas 2] [--warmup 60] [--keep-history] [--json]
  npm run bench -- synth --preset ${Object.keys(LLAMA_PRESETS).join('|')} --out DIR [--dtype float16|float32] [--seed N]

engine: devices default to cpu, plus webgpu when a hardware adapter looks present (naming webgpu
        runs it anyway, SwiftShader included). Each model × device × weight format is loaded twice,
        each time in a process of its own: with an empty shard cache (cold), then from that cache
        (cached), which also times prefill and decode. Prints a table, then one JSON object; --json
        prints the JSON only. Progress goes to stderr.
load:   concurrent clients through three host processes per pipeline on loopback (one pipeline, then two:
        six hosts), with continuous batching off (SHARDMESH_MAX_BATCH=1) and on (16) side by side:
        aggregate tokens/s, p50/p95 time to first token and per-token latency. --repeats N measures
        each client count N times, interleaved, and gives the ratio to one client per repeat (median).
soak:   the network of npm start (anvil, Oracle, hosts as processes), clients looping greedy completions,
        a non-origin host SIGKILLed every --kill-every s and a new one started --replace-after s later
        (default min(30, kill-every / 2)); prints success rates, recovery after each kill, latency, RSS per
        process over time and chain transactions per generation. RSS growth counts after --warmup s of each
        process (hosts keep served steps auditable for 5 min: a warm-up of 300 s or more sees them level off).`

function positiveInt(value: string | undefined, name: string): number | undefined {
  if (value === undefined) return undefined
  const n = Number(value)
  if (!Number.isInteger(n) || n <= 0) throw new Error(`--${name} must be a positive integer, got "${value}"`)
  return n
}

function dtypeOf(value: string | undefined, name: string): 'float16' | 'float32' | undefined {
  if (value === undefined || value === 'float16' || value === 'float32') return value
  throw new Error(`--${name} must be float16 or float32, got "${value}"`)
}

const list = (value: string) => value.split(',').map((s) => s.trim()).filter(Boolean)

async function engine(args: string[]): Promise<void> {
  const { values } = parseArgs({
    args,
    options: {
      models: { type: 'string', default: 'docs-llama-7m,tinyllama-1.1b' },
      devices: { type: 'string' },
      tokens: { type: 'string' },
      prompt: { type: 'string' },
      runs: { type: 'string' },
      threads: { type: 'string' },
      weights: { type: 'string', default: 'float32,int4' },
      'synth-dtype': { type: 'string' },
      json: { type: 'boolean', default: false },
    },
  })
  const weights = list(values.weights)
  for (const w of weights) if (!isWeightFormat(w)) throw new Error(`--weights: unknown format "${w}" (${WEIGHT_FORMATS.join(', ')})`)
  const devices = values.devices === undefined ? 'auto' : list(values.devices)
  if (devices !== 'auto') for (const d of devices) if (d !== 'cpu' && d !== 'webgpu') throw new Error(`--devices: unknown device "${d}" (cpu, webgpu)`)
  if (devices !== 'auto' && devices.includes('webgpu')) process.env.VK_ICD_FILENAMES ??= '/usr/lib/chromium/vk_swiftshader_icd.json'
  const report = await runEngineBench({
    models: list(values.models),
    devices: devices as BenchDevice[] | 'auto',
    tokens: positiveInt(values.tokens, 'tokens'),
    promptTokens: positiveInt(values.prompt, 'prompt'),
    runs: positiveInt(values.runs, 'runs'),
    threads: positiveInt(values.threads, 'threads'),
    weights: weights as WeightFormat[],
    synthDtype: dtypeOf(values['synth-dtype'], 'synth-dtype'),
    log: (line) => process.stderr.write(line + '\n'),
  })
  if (!values.json) process.stdout.write(formatEngineTable(report) + '\n\n')
  process.stdout.write(JSON.stringify(report) + '\n')
}

async function mesh(args: string[]): Promise<void> {
  const { values } = parseArgs({
    args,
    options: {
      models: { type: 'string', default: 'docs-llama-7m,tinyllama-1.1b' },
      hosts: { type: 'string' },
      tokens: { type: 'string' },
      prompt: { type: 'string' },
      weights: { type: 'string', default: 'float32' },
      json: { type: 'boolean', default: false },
    },
  })
  if (!isWeightFormat(values.weights)) throw new Error(`--weights must be one of ${WEIGHT_FORMATS.join(', ')}, got "${values.weights}"`)
  const rows = await runMeshBench({
    models: list(values.models),
    hosts: positiveInt(values.hosts, 'hosts'),
    tokens: positiveInt(values.tokens, 'tokens'),
    promptTokens: positiveInt(values.prompt, 'prompt'),
    weights: values.weights,
    log: (line) => process.stderr.write(line + '\n'),
  })
  if (!values.json) process.stdout.write(formatMeshTable(rows) + '\n\n')
  process.stdout.write(JSON.stringify({ bench: 'mesh', rows }) + '\n')
}

async function synth(args: string[]): Promise<void> {
  const { values } = parseArgs({
    args,
    options: { preset: { type: 'string' }, out: { type: 'string' }, dtype: { type: 'string', default: 'float16' }, seed: { type: 'string', default: '1' } },
  })
  if (!values.preset || !(values.preset in LLAMA_PRESETS)) throw new Error(`--preset must be one of ${Object.keys(LLAMA_PRESETS).join(', ')}`)
  if (!values.out) throw new Error('--out DIR is required')
  const r = await synthesizeLlama({
    dir: values.out,
    config: LLAMA_PRESETS[values.preset as LlamaPreset],
    dtype: dtypeOf(values.dtype, 'dtype')!,
    seed: Number(values.seed),
    onProgress: (done, total) => process.stderr.write(`\r${(done / 1e9).toFixed(2)} / ${(total / 1e9).toFixed(2)} GB`),
  })
  process.stderr.write('\n')
  process.stdout.write(`${r.dir}: ${r.parameters} parameters, ${(r.bytes / 1e9).toFixed(2)} GB, ${r.tokenizer} tokenizer, ${(r.ms / 1000).toFixed(1)} s\n`)
}

/** Gas of register, heartbeat, proof, report, distribute and claim on a fresh devnet. */
async function chain(args: string[]): Promise<void> {
  const { values } = parseArgs({ args, options: { json: { type: 'boolean', default: false } } })
  const report = await runChainBench({ log: (line) => process.stderr.write(line + '\n') })
  if (!values.json) process.stdout.write(formatChainTable(report) + '\n\n')
  process.stdout.write(JSON.stringify(report) + '\n')
}

/** Spot checks: added latency and compute at the rate, side by side with unchecked generations; detection per cheater. */
async function verify(args: string[]): Promise<void> {
  const { values } = parseArgs({ args, options: { model: { type: 'string' }, weights: { type: 'string' }, rounds: { type: 'string' }, tokens: { type: 'string' }, rate: { type: 'string' }, json: { type: 'boolean', default: false } } })
  const rate = values.rate === undefined ? undefined : Number(values.rate)
  if (rate !== undefined && !(rate > 0 && rate <= 1)) throw new Error(`--rate must be in (0, 1], got "${values.rate}"`)
  const weights = values.weights ?? 'float32'
  if (!isWeightFormat(weights)) throw new Error(`--weights must be one of ${WEIGHT_FORMATS.join(', ')}, got "${weights}"`)
  const report = await runVerifyBench({ model: values.model, weights, rounds: positiveInt(values.rounds, 'rounds'), tokens: positiveInt(values.tokens, 'tokens'), rate, log: (line) => process.stderr.write(line + '\n') })
  if (!values.json) process.stdout.write(formatVerifyTable(report) + '\n\n')
  process.stdout.write(JSON.stringify(report) + '\n')
}

/** Both memory scans as one JSON object (the engine bench runs this in a child process). */
async function scan(args: string[]): Promise<void> {
  const { values } = parseArgs({ args, options: { threads: { type: 'string' } } })
  const pair = await scanPair(positiveInt(values.threads, 'threads') ?? availableParallelism())
  process.stdout.write(JSON.stringify(pair) + '\n')
}

/** Layer assignment under simulated churn (pure, no network). */
async function oracle(args: string[]): Promise<void> {
  const { values } = parseArgs({
    args,
    options: { agents: { type: 'string' }, events: { type: 'string' }, seed: { type: 'string' }, replicas: { type: 'string' }, json: { type: 'boolean', default: false } },
  })
  const report = runOracleBench({
    agents: positiveInt(values.agents, 'agents'),
    events: positiveInt(values.events, 'events'),
    seed: positiveInt(values.seed, 'seed'),
    replicas: positiveInt(values.replicas, 'replicas'),
  })
  if (!values.json) process.stdout.write(formatOracleTable(report) + '\n\n')
  process.stdout.write(JSON.stringify(report) + '\n')
}

/** ms/token through three hosts over the Plumise gRPC pipeline: full-sequence recompute vs KV cache by request id. */
async function grpc(args: string[]): Promise<void> {
  const { values } = parseArgs({
    args,
    options: { models: { type: 'string', default: 'docs-llama-7m' }, contexts: { type: 'string', default: '32,256' }, tokens: { type: 'string' }, dtype: { type: 'string', default: 'float32' }, json: { type: 'boolean', default: false } },
  })
  const dtype = values.dtype
  if (dtype !== 'float32' && dtype !== 'float16' && dtype !== 'bfloat16') throw new Error(`--dtype must be float32, float16 or bfloat16, got "${dtype}"`)
  const rows = await runGrpcBench({
    models: list(values.models),
    contexts: list(values.contexts).map((c) => positiveInt(c, 'contexts')!),
    tokens: positiveInt(values.tokens, 'tokens'),
    dtype,
    log: (line) => process.stderr.write(line + '\n'),
  })
  if (!values.json) process.stdout.write(formatGrpcTable(rows) + '\n\n')
  process.stdout.write(JSON.stringify({ bench: 'grpc', rows }) + '\n')
}

/** The network under churn for minutes: recovery, memory, chain load (issue "Recovery in seconds under churn"). */
async function soak(args: string[]): Promise<void> {
  const { values } = parseArgs({
    args,
    options: { minutes: { type: 'string', default: '15' }, clients: { type: 'string', default: '4' }, 'kill-every': { type: 'string', default: '90' }, 'replace-after': { type: 'string' }, hosts: { type: 'string' }, replicas: { type: 'string' }, warmup: { type: 'string' }, 'keep-history': { type: 'boolean', default: false }, json: { type: 'boolean', default: false } },
  })
  const minutes = Number(values.minutes)
  if (!(minutes > 0)) throw new Error(`--minutes must be a positive number, got "${values.minutes}"`)
  const replaceAfter = values['replace-after'] === undefined ? undefined : Number(values['replace-after'])
  if (replaceAfter !== undefined && !(replaceAfter >= 0)) throw new Error(`--replace-after must be a number of seconds, got "${values['replace-after']}"`)
  const report = await runSoak({
    minutes,
    clients: positiveInt(values.clients, 'clients')!,
    killEverySec: positiveInt(values['kill-every'], 'kill-every')!,
    replaceAfterSec: replaceAfter,
    hosts: positiveInt(values.hosts, 'hosts'),
    replicas: positiveInt(values.replicas, 'replicas'),
    warmupSec: positiveInt(values.warmup, 'warmup'),
    keepHistory: values['keep-history'],
    log: (line) => process.stderr.write(line + '\n'),
  })
  if (!values.json) process.stdout.write(formatSoakTable(report) + '\n\n')
  process.stdout.write(JSON.stringify(report) + '\n')
}

async function farm(args: string[]): Promise<void> {
  const { values } = parseArgs({ args, options: { workers: { type: 'string' }, gpu: { type: 'string' }, completions: { type: 'string' }, tokens: { type: 'string' }, json: { type: 'boolean', default: false } } })
  const gpu = values.gpu ?? 'off'
  if (gpu !== 'off' && gpu !== 'swiftshader' && gpu !== 'auto') throw new Error(`--gpu must be off, swiftshader or auto, got "${gpu}"`)
  const report = await runFarmBench({ workers: positiveInt(values.workers, 'workers') ?? 3, model: 'docs-llama-7m', gpu, completions: positiveInt(values.completions, 'completions') ?? 3, tokens: positiveInt(values.tokens, 'tokens') ?? 32 })
  if (!values.json) process.stdout.write(formatFarmTable(report) + '\n')
  process.stdout.write(JSON.stringify({ bench: 'farm', ...report }) + '\n')
}

/** One load of an engine bench row as one JSON line (the engine bench runs this in a child process). */
async function engineRow(args: string[]): Promise<void> {
  const params = JSON.parse(args[0] ?? '') as EngineRowParams
  if (params.device === 'webgpu') process.env.VK_ICD_FILENAMES ??= '/usr/lib/chromium/vk_swiftshader_icd.json'
  process.stdout.write(JSON.stringify(await engineRowPhase(params)) + '\n')
}

/** Aggregate tokens/s and latency under concurrent clients, batched vs unbatched (issue 14). */
async function load(args: string[]): Promise<void> {
  const { values } = parseArgs({
    args,
    options: {
      models: { type: 'string', default: 'docs-llama-7m,tinyllama-1.1b' },
      clients: { type: 'string', default: '1,4,16' },
      pipelines: { type: 'string', default: '1,2' },
      modes: { type: 'string', default: 'unbatched,batched' },
      tokens: { type: 'string' },
      prompt: { type: 'string' },
      weights: { type: 'string', default: 'float32' },
      repeats: { type: 'string' },
      json: { type: 'boolean', default: false },
    },
  })
  if (!isWeightFormat(values.weights)) throw new Error(`--weights must be one of ${WEIGHT_FORMATS.join(', ')}, got "${values.weights}"`)
  const modes = list(values.modes)
  for (const m of modes) if (m !== 'batched' && m !== 'unbatched') throw new Error(`--modes: unknown mode "${m}" (batched, unbatched)`)
  const rows = await runLoadBench({
    models: list(values.models),
    clients: list(values.clients).map((c) => positiveInt(c, 'clients')!),
    pipelines: list(values.pipelines).map((c) => positiveInt(c, 'pipelines')!),
    modes: modes as LoadMode[],
    tokens: positiveInt(values.tokens, 'tokens'),
    promptTokens: positiveInt(values.prompt, 'prompt'),
    weights: values.weights,
    repeats: positiveInt(values.repeats, 'repeats'),
    log: (line) => process.stderr.write(line + '\n'),
  })
  if (!values.json) process.stdout.write(formatLoadTable(rows) + '\n\n')
  process.stdout.write(JSON.stringify({ bench: 'load', rows }) + '\n')
}

const COMMANDS: Record<string, (args: string[]) => Promise<void>> = { engine, 'engine-row': engineRow, mesh, load, synth, scan, oracle, chain, grpc, soak, farm, verify }

async function main(argv: string[]): Promise<void> {
  const [command, ...rest] = argv
  const run = command ? COMMANDS[command] : undefined
  if (!run || rest.includes('--help') || rest.includes('-h')) {
    process.stdout.write(USAGE + '\n')
    if (!run && command !== '--help' && command !== '-h') process.exitCode = 2
    return
  }
  await run(rest)
}

main(process.argv.slice(2)).catch((e: unknown) => {
  process.stderr.write(`error: ${(e as Error).message}\n`)
  process.exitCode = 1
})
