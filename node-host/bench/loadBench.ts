import { generateKeyPair } from '@libp2p/crypto/keys'
import { spawn, type ChildProcess } from 'node:child_process'
import { createWriteStream } from 'node:fs'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { createForwardService } from '../../shared/mesh/forwardService.ts'
import { createPeerTable } from '../../shared/mesh/peerTable.ts'
import { parseModelConfig } from '../../shared/model/modelSpec.ts'
import type { WeightFormat } from '../../shared/model/shardGraph.ts'
import { splitLayers } from '../cli/localNetwork.ts'
import { createNodeLibp2p } from '../mesh/createNodeLibp2p.ts'
import { fileModelSource } from '../model/fileModelSource.ts'
import { freePort } from '../net/freePort.ts'
import { prepareModel } from './engineBench.ts'
import { median } from './stats.ts'

const MAIN = resolve(dirname(fileURLToPath(import.meta.url)), '../cli/main.ts')

/** Continuous batching on the hosts (SHARDMESH_MAX_BATCH=16) or off (=1), measured side by side. */
export type LoadMode = 'batched' | 'unbatched'

export type LoadBenchOptions = {
  models: string[]
  /** Concurrent clients per measurement. @default [1, 4, 16] */
  clients?: number[]
  /** Pipelines of three hosts each. @default [1, 2] */
  pipelines?: number[]
  /** @default ['unbatched', 'batched'] */
  modes?: LoadMode[]
  /** New tokens per client. @default 16 */
  tokens?: number
  /** Prompt tokens per client. @default 16 */
  promptTokens?: number
  weights?: WeightFormat
  /**
   * Measurements of each client count, interleaved (1, 4, 16, 1, 4, 16, …): on a shared machine
   * the speed drifts between minutes, so ratios are taken within a repeat. @default 1
   */
  repeats?: number
  log?: (line: string) => void
}

export type Percentiles = { p50: number; p95: number }

export type LoadBenchRow = {
  model: string
  mode: LoadMode
  hosts: number
  pipelines: number
  clients: number
  /** Which of the interleaved repeats (0-based). */
  repeat: number
  /** Tokens all clients received, over the wall time from the first request to the last token. */
  tokensPerSecond: number
  wallMs: number
  /** Request sent → first token, over clients. */
  ttftMs: Percentiles
  /** Gaps between a client's consecutive tokens, over all clients' gaps. */
  perTokenMs: Percentiles
  /** Every client's greedy ids equal those of the same prompt in the model's first measurement. */
  sameIds: boolean
}

function percentiles(values: number[]): Percentiles {
  const s = [...values].sort((a, b) => a - b)
  const at = (q: number) => (s.length ? s[Math.min(s.length - 1, Math.floor(q * s.length))]! : 0)
  return { p50: at(0.5), p95: at(0.95) }
}

/** Starts one host process and resolves once it serves. */
function startHost(args: string[], env: Record<string, string>): Promise<ChildProcess> {
  const child = spawn(process.execPath, [MAIN, 'start', ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, LOG_LEVEL: 'info', ...env } })
  let log = ''
  return new Promise((resolve, reject) => {
    const onData = (b: Buffer) => {
      log += b.toString()
      if (log.includes('"msg":"serving"')) {
        // Keep draining its output so the pipe never blocks it (into a file when asked, to see why a host failed).
        child.stdout!.off('data', onData)
        child.stderr!.off('data', onData)
        const keep = process.env.SHARDMESH_LOAD_LOGS
        if (keep) {
          const file = createWriteStream(join(keep, `host-${child.pid}.log`))
          file.write(log)
          child.stdout!.pipe(file, { end: false })
          child.stderr!.pipe(file, { end: false })
        } else {
          child.stdout!.resume()
          child.stderr!.resume()
        }
        log = ''
        resolve(child)
      }
    }
    child.stdout!.on('data', onData)
    child.stderr!.on('data', onData)
    child.once('exit', (code) => reject(new Error(`host exited (${code}): ${log.slice(-1500)}`)))
  })
}

/**
 * Aggregate throughput under concurrent clients: for each model and mode, three host processes
 * (one pipeline) on loopback, then three more (a second pipeline); this process is the origin of
 * every client's session. Clients are spread over the pipelines round-robin here, so the numbers
 * measure the shards, not the route planner. Each client generates greedily from its own prompt.
 */
export async function runLoadBench(options: LoadBenchOptions): Promise<LoadBenchRow[]> {
  const log = options.log ?? (() => undefined)
  const clientCounts = options.clients ?? [1, 4, 16]
  const pipelineCounts = [...(options.pipelines ?? [1, 2])].sort((a, b) => a - b)
  const modes = options.modes ?? ['unbatched', 'batched']
  const tokens = options.tokens ?? 16
  const weights = options.weights ?? 'float32'
  const rows: LoadBenchRow[] = []
  for (const name of options.models) {
    const dir = await prepareModel(name, { log })
    const source = fileModelSource(dir)
    const spec = parseModelConfig(await source.readText('config.json'))
    const ranges = splitLayers(spec.numLayers, 3)
    const prompt = (k: number) => Array.from({ length: options.promptTokens ?? 16 }, (_, i) => (i * 37 + 11 + 101 * (k % 4)) % spec.vocabSize)
    const reference = new Map<number, string>()
    for (const mode of modes) {
      const home = await mkdtemp(join(tmpdir(), 'shardmesh-load-'))
      const children: ChildProcess[] = []
      const node = await createNodeLibp2p({ privateKey: await generateKeyPair('Ed25519'), relay: false, listen: ['/ip4/127.0.0.1/tcp/0'] })
      try {
        const service = createForwardService({ node, model: source.name, hiddenSize: spec.hiddenSize, stepTimeoutMs: 600_000 })
        await service.start()
        /** Ports of each pipeline's hosts. */
        const pipelines: number[][] = []
        for (const count of pipelineCounts) {
          while (pipelines.length < count) {
            const p = pipelines.length
            log(`${name} ${mode}: starting pipeline ${p + 1} (${ranges.map((r) => `${r.start}-${r.end}`).join(',')})`)
            const ports = await Promise.all(ranges.map(() => freePort()))
            children.push(
              ...(await Promise.all(
                ranges.map((r, i) =>
                  startHost(
                    ['--model', dir, '--layers', `${r.start}-${r.end}`, '--device', 'cpu', '--weights', weights, '--listen', `/ip4/127.0.0.1/tcp/${ports[i]}`, '--identity', join(home, `${p}-${i}.key`)],
                    { SHARDMESH_MAX_BATCH: mode === 'batched' ? '16' : '1' },
                  ),
                ),
              )),
            )
            pipelines.push(ports)
          }
          const table = createPeerTable({ node, model: source.name, bootstrap: pipelines.flat().map((p) => `/ip4/127.0.0.1/tcp/${p}`) })
          const onPipeline = (k: number) => {
            const ports = pipelines[k % pipelines.length]!
            return () => table.peers().filter((peer) => peer.multiaddrs.some((a) => ports.some((port) => a.includes(`/tcp/${port}/`) || a.endsWith(`/tcp/${port}`))))
          }
          // On a loaded machine a fresh host can miss the info protocol's 5 s answer: ask again until every host answered.
          for (let attempt = 0; ; attempt++) {
            await table.refresh()
            if (pipelines.every((_, k) => onPipeline(k)().length === ranges.length)) break
            if (attempt >= 10) throw new Error(`hosts did not answer the info protocol: ${table.peers().length} of ${pipelines.length * ranges.length}`)
            log(`  ${table.peers().length} of ${pipelines.length * ranges.length} hosts answered; asking again`)
          }
          const run = (k: number, n: number, onToken?: (i: number) => void) =>
            service.generate({ peers: onPipeline(k), numLayers: spec.numLayers, inputIds: prompt(k), maxNewTokens: n, maxFailovers: 0, onToken: (_id, i) => void onToken?.(i) })
          await Promise.all(pipelines.map((_, k) => run(k, 2)))
          // Every client count once per repeat, interleaved: 1, 4, 16, 1, 4, 16, …
          const schedule = Array.from({ length: options.repeats ?? 1 }, (_, repeat) => clientCounts.map((clients) => ({ repeat, clients }))).flat()
          for (const { repeat, clients } of schedule) {
            const t0 = performance.now()
            const ttft: number[] = []
            const gaps: number[] = []
            const results = await Promise.all(
              Array.from({ length: clients }, (_, k) => {
                let last = t0
                return run(k, tokens, (i) => {
                  const now = performance.now()
                  if (i === 0) ttft.push(now - t0)
                  else gaps.push(now - last)
                  last = now
                })
              }),
            )
            const wallMs = performance.now() - t0
            let sameIds = true
            results.forEach((r, k) => {
              const ids = JSON.stringify(r.outputIds)
              const ref = reference.get(k % 4)
              if (ref === undefined) reference.set(k % 4, ids)
              else if (ref !== ids) sameIds = false
            })
            const total = results.reduce((a, r) => a + r.outputIds.length, 0)
            const row: LoadBenchRow = {
              model: name,
              mode,
              hosts: pipelines.length * ranges.length,
              pipelines: pipelines.length,
              clients,
              repeat,
              tokensPerSecond: (total / wallMs) * 1000,
              wallMs,
              ttftMs: percentiles(ttft),
              perTokenMs: percentiles(gaps),
              sameIds,
            }
            rows.push(row)
            log(`  ${mode} ${row.hosts} hosts, ${clients} clients: ${row.tokensPerSecond.toFixed(2)} tok/s, TTFT p50 ${row.ttftMs.p50.toFixed(0)} ms, per token p50 ${row.perTokenMs.p50.toFixed(0)} ms`)
          }
          table.stop()
        }
      } finally {
        await node.stop()
        for (const c of children) c.kill('SIGTERM')
        await rm(home, { recursive: true, force: true })
      }
    }
  }
  return rows
}

/**
 * One line per model, mode, hosts and clients: medians over the repeats, and `× 1 client` as the
 * median of each repeat's ratio to the single client of the same repeat (measured minutes apart
 * at most); `range` gives that ratio's lowest and highest.
 */
export function formatLoadTable(rows: LoadBenchRow[]): string {
  const head = ['model', 'hosts', 'clients', 'mode', 'repeats', 'tok/s', '× 1 client', 'range', 'TTFT p50 ms', 'TTFT p95 ms', 'ms/tok p50', 'ms/tok p95', 'same ids']
  const same = (a: LoadBenchRow, b: LoadBenchRow) => a.model === b.model && a.mode === b.mode && a.hosts === b.hosts
  const groups: LoadBenchRow[][] = []
  for (const r of rows) {
    const g = groups.find((x) => same(x[0]!, r) && x[0]!.clients === r.clients)
    if (g) g.push(r)
    else groups.push([r])
  }
  const body = groups.map((g) => {
    const r = g[0]!
    const ratios = g.flatMap((x) => {
      const base = rows.find((b) => same(b, x) && b.repeat === x.repeat && b.clients === 1)
      return base ? [x.tokensPerSecond / base.tokensPerSecond] : []
    })
    return [
      r.model,
      String(r.hosts),
      String(r.clients),
      r.mode,
      String(g.length),
      median(g.map((x) => x.tokensPerSecond)).toFixed(2),
      ratios.length ? median(ratios).toFixed(2) : '',
      ratios.length > 1 ? `${Math.min(...ratios).toFixed(2)}–${Math.max(...ratios).toFixed(2)}` : '',
      median(g.map((x) => x.ttftMs.p50)).toFixed(0),
      median(g.map((x) => x.ttftMs.p95)).toFixed(0),
      median(g.map((x) => x.perTokenMs.p50)).toFixed(1),
      median(g.map((x) => x.perTokenMs.p95)).toFixed(1),
      String(g.every((x) => x.sameIds)),
    ]
  })
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((b) => b[i]!.length)))
  const line = (cells: string[]) => cells.map((c, i) => c.padEnd(widths[i]!)).join('  ')
  return [line(head), line(widths.map((w) => '-'.repeat(w))), ...body.map(line)].join('\n')
}
