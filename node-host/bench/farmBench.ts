import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { topologySchema, type Topology } from '../../shared/oracle/plumiseSchemas.ts'
import { freePort } from '../net/freePort.ts'
import { runFarm } from '../farm/farmCommand.ts'
import { rangeBytes } from '../../shared/oracle/assignLayers.ts'
import { readModelInfo } from '../oracle/modelInfo.ts'
import type { FarmGpu } from '../farm/farmPage.ts'

const MAIN = resolve(dirname(fileURLToPath(import.meta.url)), '../cli/main.ts')

export type FarmBenchOptions = { workers: number; model: string; gpu: FarmGpu; completions: number; tokens: number }

export type FarmBenchReport = {
  workers: number
  gpu: FarmGpu
  /** Mean PSS of one worker (its page and its Chromium), MB. */
  workerMb: number
  pagesPerGiB: number
  launchToServingS: number
  /** Completions through an origin without layers (`shardmesh origin`), the pages serving every layer. */
  farmTokensPerSecond: number
  /** The same completions on a network of Node hosts only. */
  nodeTokensPerSecond: number
}

type Network = { child: ChildProcess; oracle: string; api: string; stop(): Promise<void> }

/** `shardmesh local` as a child process, without the chain (payouts are not measured here). */
async function startLocal(hosts: number): Promise<Network> {
  const [api, oracle, app] = [await freePort(), await freePort(), await freePort()]
  const child = spawn(process.execPath, [MAIN, 'local', '--hosts', String(hosts), '--no-chain', '--api-port', String(api), '--oracle-port', String(oracle), '--app-port', String(app)], { stdio: ['ignore', 'ignore', 'inherit'], env: { ...process.env, LOG_LEVEL: 'warn' } })
  const net = {
    child,
    oracle: `http://127.0.0.1:${oracle}`,
    api: `http://127.0.0.1:${api}`,
    async stop() {
      child.kill('SIGINT')
      await Promise.race([new Promise((r) => child.once('exit', r)), new Promise((r) => setTimeout(r, 20_000))])
      if (child.exitCode === null) child.kill('SIGKILL')
    },
  }
  await until(async () => (await fetch(`${net.api}/health`)).ok, 300_000)
  return net
}

/** An Oracle and an origin that holds no layers (the pages' relay), as child processes: a network the farm's pages alone serve. */
async function startPagesNetwork(dir: string): Promise<Network & { relay: string }> {
  const [api, oracle] = [await freePort(), await freePort()]
  const env = { ...process.env, LOG_LEVEL: 'info' }
  const oracleChild = spawn(process.execPath, [MAIN, 'oracle', '--port', String(oracle), '--db', join(dir, 'oracle.db')], { stdio: ['ignore', 'ignore', 'ignore'], env })
  const oracleUrl = `http://127.0.0.1:${oracle}`
  let originChild: ChildProcess | undefined
  const stopAll = async () => {
    for (const c of [originChild, oracleChild]) {
      if (!c || c.exitCode !== null) continue
      c.kill('SIGTERM')
      await Promise.race([new Promise((r) => c.once('exit', r)), new Promise((r) => setTimeout(r, 20_000))])
      if (c.exitCode === null) c.kill('SIGKILL')
    }
  }
  try {
    await until(async () => (await fetch(`${oracleUrl}/health`)).ok, 120_000)
    originChild = spawn(process.execPath, [MAIN, 'origin', '--oracle', oracleUrl, '--api-port', String(api), '--listen', '/ip4/127.0.0.1/tcp/0', '--listen', '/ip4/127.0.0.1/tcp/0/ws', '--identity', join(dir, 'origin.key')], { stdio: ['ignore', 'ignore', 'pipe'], env })
    let log = ''
    originChild.stderr!.on('data', (c: Buffer) => (log += c.toString()))
    let relay: string | undefined
    await until(async () => (relay = /"relays":\["([^"]+)"/.exec(log)?.[1]) !== undefined, 120_000)
    return { child: originChild, oracle: oracleUrl, api: `http://127.0.0.1:${api}`, relay: relay!, stop: stopAll }
  } catch (e) {
    await stopAll()
    throw e
  }
}

async function until(fn: () => Promise<boolean>, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!(await fn().catch(() => false))) {
    if (Date.now() > deadline) throw new Error('farm bench: timed out')
    await new Promise((r) => setTimeout(r, 500))
  }
}

/** Decode tokens/s over `n` greedy completions through the origin's OpenAI API (the first, which may wait for routes, not counted). */
async function completionRate(api: string, n: number, tokens: number): Promise<number> {
  const once = async () => {
    const t0 = performance.now()
    const r = await fetch(`${api}/v1/completions`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ prompt: 'The farm', max_tokens: tokens, temperature: 0 }) })
    if (!r.ok) throw new Error(`completion: HTTP ${r.status}`)
    const body = (await r.json()) as { usage: { completion_tokens: number } }
    return { tokens: body.usage.completion_tokens, s: (performance.now() - t0) / 1000 }
  }
  await until(async () => (await once(), true), 120_000)
  let sumTokens = 0
  let sumS = 0
  for (let i = 0; i < n; i++) {
    const r = await once()
    sumTokens += r.tokens
    sumS += r.s
  }
  return sumTokens / sumS
}

const whole = (t: Topology) => Array.from({ length: t.totalLayers }, (_, l) => t.nodes.some((n) => n.ready && n.layerStart <= l && l < n.layerEnd)).every(Boolean)

/**
 * The farm against Node hosts on this machine: a network of 2 Node hosts (the model whole on Node),
 * then an Oracle, an origin without layers and a farm of `workers` pages, each offering ~55% of the
 * weights (as each `npm start` host does), so the pages alone serve the model; memory per worker,
 * launch to serving, and completion tokens/s of each.
 */
export async function runFarmBench(o: FarmBenchOptions): Promise<FarmBenchReport> {
  process.stderr.write('farm bench: Node hosts only…\n')
  const nodeNet = await startLocal(2)
  let nodeTokensPerSecond: number
  try {
    nodeTokensPerSecond = await completionRate(nodeNet.api, o.completions, o.tokens)
  } finally {
    await nodeNet.stop()
  }
  process.stderr.write(`farm bench: a farm of ${o.workers} pages alone, an origin without layers…\n`)
  const dir = await mkdtemp(join(tmpdir(), 'shardmesh-farm-bench-'))
  // The Oracle serves the default model (docs-llama-7m), as `shardmesh local` does.
  const info = await readModelInfo(undefined)
  if (info.name !== o.model) throw new Error(`farm bench: the default model is ${info.name}, not ${o.model}`)
  const pageMemoryMb = Math.ceil((rangeBytes(info, { start: 0, end: info.numLayers }) * 0.55) / 2 ** 20)
  let net: Awaited<ReturnType<typeof startPagesNetwork>> | undefined
  try {
    net = await startPagesNetwork(dir)
    const t0 = performance.now()
    const farm = await runFarm({ workers: o.workers, oracle: net.oracle, relays: [net.relay], chromium: process.env.SHARDMESH_CHROMIUM ?? '/usr/bin/chromium', gpu: o.gpu, profiles: join(dir, 'profiles'), memoryMb: 1_000_000, pageMemoryMb, headful: false })
    try {
      const topology = async () => topologySchema.parse(await (await fetch(`${net!.oracle}/api/v1/pipeline/topology?model=${encodeURIComponent(info.name)}`)).json())
      await until(async () => whole(await topology()), 600_000)
      const launchToServingS = (performance.now() - t0) / 1000
      const farmTokensPerSecond = await completionRate(net.api, o.completions, o.tokens)
      const measured = farm.snapshot().filter((w) => w.pageRssBytes !== undefined)
      const workerMb = measured.reduce((s, w) => s + (w.pageRssBytes ?? 0) + (w.browserRssBytes ?? 0), 0) / Math.max(1, measured.length) / 2 ** 20
      return { workers: o.workers, gpu: o.gpu, workerMb: Math.round(workerMb), pagesPerGiB: Number((1024 / workerMb).toFixed(2)), launchToServingS: Number(launchToServingS.toFixed(1)), farmTokensPerSecond: Number(farmTokensPerSecond.toFixed(2)), nodeTokensPerSecond: Number(nodeTokensPerSecond.toFixed(2)) }
    } finally {
      await farm.stop()
    }
  } finally {
    await net?.stop()
    await rm(dir, { recursive: true, force: true })
  }
}

export function formatFarmTable(r: FarmBenchReport): string {
  return [
    `farm of ${r.workers} pages (gpu ${r.gpu}) on this machine:`,
    `  memory per worker (page + its Chromium, PSS)  ${r.workerMb} MB  → ${r.pagesPerGiB} pages per GiB`,
    `  launch to serving (every layer served)        ${r.launchToServingS} s`,
    `  tokens/s, ${r.workers} pages (origin without layers)      ${r.farmTokensPerSecond}`,
    `  tokens/s, 2 Node hosts                        ${r.nodeTokensPerSecond}`,
  ].join('\n')
}
