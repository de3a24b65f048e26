import { spawn, type ChildProcess } from 'node:child_process'
import { closeSync, openSync, readFileSync } from 'node:fs'
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { getBlock, getBlockNumber } from 'viem/actions'
import { rangeBytes } from '../../shared/oracle/assignLayers.ts'
import { startDevnet, type Devnet } from '../chain/startDevnet.ts'
import { freePort } from '../net/freePort.ts'
import { readModelInfo } from '../oracle/modelInfo.ts'
import { loadFixture, REPO_ROOT } from '../../testing/fixtures.ts'

/**
 * The soak of issue "Recovery in seconds under churn": the network `npm start` runs (anvil with
 * the contracts, the Oracle, node hosts as processes, the first the origin), clients looping greedy
 * completions, a non-origin host SIGKILLed every `killEverySec` and a fresh one started
 * `replaceAfterSec` later. Measures what a user sees (answers, latency, identical greedy texts),
 * how long each kill takes to repair, the processes' memory over time and the chain's load.
 */
export type SoakOptions = {
  minutes: number
  clients: number
  killEverySec: number
  /** @default min(30, killEverySec / 2) */
  replaceAfterSec?: number
  /** Hosts at start (the first is the origin). @default 4 */
  hosts?: number
  /** The Oracle's --replicas (1 with 3 hosts: a pipeline of two and an idle spare, so each kill loses a last copy). @default 2 */
  replicas?: number
  /** Tokens per completion. @default 16 */
  maxTokens?: number
  /** RSS samples are taken this often. @default 10 */
  rssEverySec?: number
  /** RSS growth is measured after this warm-up, counted from each process's first sample. @default 60 */
  warmupSec?: number
  /** anvil keeps every block's state (npm start's --keep-history), as before the memory fix. @default false */
  keepHistory?: boolean
  log: (line: string) => void
}

type Answer = { prompt: number; start: number; end: number; status: number; text?: string; retryAfter?: string | null }
type Kill = { at: number; peerId: string; range: string; lastCopy: boolean; lostAt?: number; backAt?: number; recoverS?: number; failed: number }
type RssSeries = { name: string; samples: Array<[number, number]> }

export type SoakReport = {
  bench: 'soak'
  minutes: number
  clients: number
  killEverySec: number
  /** RSS growth counts after this long of each process. */
  warmupSec: number
  requests: number
  answered: number
  successRate: number
  /** Requests that started and ended while every layer had a live, ready copy. */
  coveredRequests: number
  coveredSuccessRate: number
  /** Answers other than 200, by status. */
  failures: Record<string, number>
  identicalGreedy: boolean
  latencyMs: { p50: number; p95: number; p99: number; max: number }
  kills: Array<{ atS: number; range: string; lastCopy: boolean; coverageLostS: number | null; coverageBackS: number | null; recoverS: number | null; failedDuring: number }>
  /**
   * `growthMbPerHour`: least-squares slope of every sample after warm-up (a short run's slope is
   * mostly the GC's sawtooth); `lowsGrowthMbPerHour`: the slope of each minute's lowest sample after
   * warm-up, what stays resident across collections (null under three minutes).
   */
  rss: Array<{ process: string; firstMb: number | null; lastMb: number; maxMb: number; growthMbPerHour: number | null; lowsGrowthMbPerHour: number | null; samples: number }>
  chain: { transactions: number; proofTransactions: number; generations: number; perGeneration: number; proofsPerGeneration: number }
}

const MAIN = join(REPO_ROOT, 'node-host', 'cli', 'main.ts')
const MB = 1024 * 1024
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

function percentile(sorted: number[], p: number): number {
  if (!sorted.length) return 0
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!
}

/** Least-squares slope of (seconds, MB) in MB per hour. */
function slopePerHour(points: Array<[number, number]>): number | null {
  if (points.length < 3) return null
  const n = points.length
  const mx = points.reduce((s, p) => s + p[0], 0) / n
  const my = points.reduce((s, p) => s + p[1], 0) / n
  const sxx = points.reduce((s, p) => s + (p[0] - mx) ** 2, 0)
  if (sxx === 0) return null
  return (points.reduce((s, p) => s + (p[0] - mx) * (p[1] - my), 0) / sxx) * 3600
}

/** Each `windowSec` window's lowest sample, at the window's middle (whole windows only). */
function windowLows(points: Array<[number, number]>, windowSec: number): Array<[number, number]> {
  if (!points.length) return []
  const start = points[0]![0]
  const lows = new Map<number, number>()
  for (const [t, mb] of points) {
    const w = Math.floor((t - start) / windowSec)
    lows.set(w, Math.min(lows.get(w) ?? Infinity, mb))
  }
  const whole = Math.floor((points.at(-1)![0] - start) / windowSec)
  return [...lows].filter(([w]) => w < whole).map(([w, mb]) => [start + (w + 0.5) * windowSec, mb])
}

/** Resident memory of a process, MB (undefined once it is gone). */
function rssMb(pid: number | undefined): number | undefined {
  if (!pid) return undefined
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))
    return m ? Number(m[1]) / 1024 : undefined
  } catch {
    return undefined
  }
}

/** The anvil child of this process (startDevnet spawns it). */
async function anvilPid(): Promise<number | undefined> {
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue
    try {
      const stat = await readFile(`/proc/${entry}/stat`, 'utf8')
      const m = /^\d+ \(([^)]*)\) \S (\d+)/.exec(stat)
      if (m && m[1] === 'anvil' && Number(m[2]) === process.pid) return Number(entry)
    } catch {
      // gone meanwhile
    }
  }
  return undefined
}

export async function runSoak(o: SoakOptions): Promise<SoakReport> {
  const { log } = o
  const hostsAtStart = o.hosts ?? 4
  const replaceAfterSec = o.replaceAfterSec ?? Math.min(30, o.killEverySec / 2)
  const maxTokens = o.maxTokens ?? 16
  const warmupSec = o.warmupSec ?? 60
  const dir = await mkdtemp(join(tmpdir(), 'shardmesh-soak-'))
  const info = await readModelInfo(undefined)
  const prompts = (await loadFixture('docs-llama-7m')).prompts.map((p) => p.prompt)
  const children: Array<{ name: string; child: ChildProcess; logFile: string; peerId?: string; killed: boolean }> = []
  let devnet: Devnet | undefined
  try {
    const devnetFile = join(dir, 'devnet.json')
    // As npm start runs it (`shardmesh local`): anvil without historical state, so its memory stays flat.
    devnet = await startDevnet({ out: devnetFile, blocksPerEpoch: 30, pruneHistory: !o.keepHistory })
    const anvil = await anvilPid()
    const chainEnv = { SHARDMESH_DEVNET_FILE: devnetFile, PLUMISE_CHAIN_ID: String(devnet.chainId), PLUMISE_RPC_URL: devnet.rpcUrl }
    const spawnCli = (name: string, args: string[], env: Record<string, string>) => {
      const logFile = join(dir, `${name}.log`)
      const fd = openSync(logFile, 'a')
      const child = spawn(process.execPath, [MAIN, ...args], { stdio: ['ignore', fd, fd], env: { ...process.env, LOG_LEVEL: 'info', ...env } })
      closeSync(fd)
      const entry = { name, child, logFile, killed: false }
      children.push(entry)
      return entry
    }
    const oraclePort = await freePort()
    const oracleUrl = `http://127.0.0.1:${oraclePort}`
    const oracle = spawnCli('oracle', ['oracle', '--port', String(oraclePort), '--db', join(dir, 'oracle.db'), '--replicas', String(o.replicas ?? 2)], { ...chainEnv, ORACLE_PRIVATE_KEY: devnet.accounts.oracle.privateKey })
    const apiPort = await freePort()
    const api = `http://127.0.0.1:${apiPort}`
    const memoryMb = Math.max(1, Math.ceil((rangeBytes(info, { start: 0, end: info.numLayers }) * 0.55) / MB))
    let wallets = 0
    let hostCount = 0
    const startHost = (origin: boolean) => {
      const i = hostCount++
      const args = ['start', '--oracle', oracleUrl, '--device', 'cpu', '--memory-mb', String(memoryMb), '--heartbeat-s', '10', '--listen', '/ip4/127.0.0.1/tcp/0', '--identity', join(dir, `host-${i}.key`)]
      if (origin) args.push('--api-port', String(apiPort))
      // A fresh wallet per host while anvil has spare accounts (a wallet is bound to one peer); then none.
      const key = devnet!.accounts.others[wallets]?.privateKey
      if (key) wallets++
      return spawnCli(`host-${i}`, args, { ...chainEnv, ...(key ? { PLUMISE_PRIVATE_KEY: key } : {}), REPORT_INTERVAL: '20', CLAIM_THRESHOLD_WEI: '100000000000000000' })
    }
    const peerOf = (h: (typeof children)[number]) => (h.peerId ??= /"peerId":"(12D3Koo\w+)"/.exec(readFileSync(h.logFile, 'utf8'))?.[1])
    await waitUntil(async () => (await fetch(`${oracleUrl}/health`)).ok, 30_000)
    const origin = startHost(true)
    for (let i = 1; i < hostsAtStart; i++) startHost(false)

    type Topo = { nodes: Array<{ layerStart: number; layerEnd: number; ready: boolean; peerId: string | null }> }
    const topology = async () => (await (await fetch(`${oracleUrl}/api/v1/pipeline/topology?model=${encodeURIComponent(info.name)}`)).json()) as Topo
    const livePeers = () => new Set(children.filter((c) => c.name.startsWith('host-') && !c.killed).map(peerOf).filter((p): p is string => !!p))
    const coveredBy = (t: Topo, live: Set<string>) =>
      Array.from({ length: info.numLayers }, (_, l) => t.nodes.some((n) => n.ready && n.peerId && live.has(n.peerId) && n.layerStart <= l && l < n.layerEnd)).every(Boolean)
    const complete = async (prompt: string) =>
      fetch(`${api}/v1/completions`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ prompt, max_tokens: maxTokens, temperature: 0 }), signal: AbortSignal.timeout(60_000) })
    log(`soak: waiting for the network (${hostsAtStart} hosts) in ${dir}`)
    const up = await waitUntil(async () => coveredBy(await topology(), livePeers()) && (await complete(prompts[0]!)).ok && children.length === hostsAtStart + 1 && children.every((c) => peerOf(c) || c === oracle), 600_000)
    if (!up) throw new Error(`the network did not come up; logs in ${dir}`)

    const t0 = Date.now()
    const endAt = t0 + o.minutes * 60_000
    const sec = (t: number) => (t - t0) / 1000
    const startBlock = await getBlockNumber(devnet.walletClient(devnet.accounts.deployer))
    log(`soak: running ${o.minutes} min, ${o.clients} clients, a kill every ${o.killEverySec} s (replacement ${replaceAfterSec} s later)`)

    // Coverage by live, ready hosts, twice a second.
    const coverage: Array<[number, boolean]> = []
    const monitor = (async () => {
      while (Date.now() < endAt) {
        const ok = await topology().then((t) => coveredBy(t, livePeers()), () => false)
        coverage.push([Date.now(), ok])
        await sleep(500)
      }
    })()
    // Resident memory of every process.
    const rss = new Map<string, RssSeries>()
    const sampleRss = () => {
      const t = sec(Date.now())
      const add = (name: string, mb: number | undefined) => {
        if (mb === undefined) return
        if (!rss.has(name)) rss.set(name, { name, samples: [] })
        rss.get(name)!.samples.push([t, mb])
      }
      for (const c of children) if (!c.killed) add(c === origin ? `${c.name} (origin)` : c.name, rssMb(c.child.pid))
      add('anvil', rssMb(anvil))
    }
    const sampler = setInterval(sampleRss, (o.rssEverySec ?? 10) * 1000)
    sampleRss()
    // Clients.
    const answers: Answer[] = []
    const clients = Array.from({ length: o.clients }, async (_, c) => {
      for (let i = c; Date.now() < endAt; i++) {
        const prompt = i % prompts.length
        const start = Date.now()
        try {
          const r = await complete(prompts[prompt]!)
          const body = (await r.json()) as { choices?: Array<{ text: string }> }
          answers.push({ prompt, start, end: Date.now(), status: r.status, text: body.choices?.[0]?.text, retryAfter: r.headers.get('retry-after') })
          if (r.status !== 200) await sleep(1000)
        } catch {
          answers.push({ prompt, start, end: Date.now(), status: 0 })
          await sleep(1000)
        }
      }
    })
    // Kills and replacements.
    const kills: Kill[] = []
    const replacements: Promise<void>[] = []
    const killer = (async () => {
      for (let next = t0 + o.killEverySec * 1000; next < endAt; next += o.killEverySec * 1000) {
        await sleep(next - Date.now())
        const t = await topology().catch(() => undefined)
        if (!t) continue
        const live = livePeers()
        const originPeer = peerOf(origin)
        const candidates = children.filter((c) => c.name.startsWith('host-') && c !== origin && !c.killed && t.nodes.some((n) => n.peerId === peerOf(c)))
        if (!candidates.length) continue
        // A host holding the last copy of some layers when there is one (the repair is what is measured), else any.
        const lastCopies = candidates.filter((c) => {
          const without = new Set(live)
          without.delete(peerOf(c)!)
          return !coveredBy(t, without)
        })
        const pool = lastCopies.length ? lastCopies : candidates
        const victim = pool[Math.floor(Math.random() * pool.length)]!
        const vp = peerOf(victim)!
        const held = t.nodes.filter((n) => n.peerId === vp).map((n) => `${n.layerStart}-${n.layerEnd}`).join(',')
        live.delete(vp)
        const lastCopy = !coveredBy(t, live)
        victim.killed = true
        victim.child.kill('SIGKILL')
        kills.push({ at: Date.now(), peerId: vp, range: held, lastCopy, failed: 0 })
        log(`soak: ${sec(Date.now()).toFixed(0)} s: killed ${victim.name} (layers ${held}${lastCopy ? ', the last copy' : ''}; origin ${originPeer?.slice(-6)})`)
        replacements.push(
          sleep(replaceAfterSec * 1000).then(() => {
            if (Date.now() >= endAt) return
            const h = startHost(false)
            log(`soak: ${sec(Date.now()).toFixed(0)} s: started ${h.name}`)
          }),
        )
      }
    })()
    await Promise.all([...clients, monitor, killer])
    await Promise.all(replacements)
    clearInterval(sampler)
    sampleRss()

    // Chain load: every transaction mined during the run, and those to verifyInference.
    const reader = devnet.walletClient(devnet.accounts.deployer)
    const endBlock = await getBlockNumber(reader)
    let transactions = 0
    let proofTransactions = 0
    const verify = devnet.config.precompiles.verifyInference.toLowerCase()
    for (let b = startBlock + 1n; b <= endBlock; b++) {
      const block = await getBlock(reader, { blockNumber: b, includeTransactions: true })
      transactions += block.transactions.length
      proofTransactions += block.transactions.filter((tx) => tx.to?.toLowerCase() === verify).length
    }

    // What the clients saw.
    const coveredAt = (t: number) => {
      let ok = true
      for (const [at, c] of coverage) {
        if (at > t) break
        ok = c
      }
      return ok
    }
    const coveredThrough = (a: Answer) => coveredAt(a.start) && coverage.every(([at, c]) => at < a.start || at > a.end || c)
    const ok = answers.filter((a) => a.status === 200)
    const covered = answers.filter(coveredThrough)
    const failures: Record<string, number> = {}
    for (const a of answers) if (a.status !== 200) failures[String(a.status)] = (failures[String(a.status)] ?? 0) + 1
    const texts = new Map<number, Set<string>>()
    for (const a of ok) texts.set(a.prompt, (texts.get(a.prompt) ?? new Set()).add(a.text ?? ''))
    const lat = ok.map((a) => a.end - a.start).sort((x, y) => x - y)
    for (const k of kills) {
      k.lostAt = coverage.find(([at, c]) => at >= k.at && !c)?.[0]
      // Lost only when it shows within the next kill period.
      if (k.lostAt !== undefined && k.lostAt - k.at > o.killEverySec * 1000) k.lostAt = undefined
      k.backAt = k.lostAt === undefined ? undefined : coverage.find(([at, c]) => at > k.lostAt! && c)?.[0]
      const firstOk = k.lostAt === undefined ? undefined : ok.filter((a) => a.start >= k.lostAt!).sort((x, y) => x.end - y.end)[0]
      k.recoverS = k.lostAt === undefined ? 0 : firstOk && (firstOk.end - k.at) / 1000
      k.failed = answers.filter((a) => a.status !== 200 && a.end >= k.at && a.end <= k.at + o.killEverySec * 1000).length
    }
    const warm = warmupSec
    const report: SoakReport = {
      bench: 'soak',
      minutes: o.minutes,
      clients: o.clients,
      killEverySec: o.killEverySec,
      warmupSec: warm,
      requests: answers.length,
      answered: ok.length,
      successRate: answers.length ? ok.length / answers.length : 0,
      coveredRequests: covered.length,
      coveredSuccessRate: covered.length ? covered.filter((a) => a.status === 200).length / covered.length : 0,
      failures,
      identicalGreedy: [...texts.values()].every((s) => s.size === 1),
      latencyMs: { p50: percentile(lat, 50), p95: percentile(lat, 95), p99: percentile(lat, 99), max: lat.at(-1) ?? 0 },
      kills: kills.map((k) => ({
        atS: Math.round(sec(k.at)),
        range: k.range,
        lastCopy: k.lastCopy,
        coverageLostS: k.lostAt === undefined ? null : (k.lostAt - k.at) / 1000,
        coverageBackS: k.backAt === undefined ? null : (k.backAt - k.at) / 1000,
        recoverS: k.recoverS ?? null,
        failedDuring: k.failed,
      })),
      rss: [...rss.values()].map((s) => {
        // Hosts started during the run warm up from their own start.
        const after = s.samples.filter(([t]) => t >= s.samples[0]![0] + warm)
        const mbs = s.samples.map(([, mb]) => mb)
        const lows = slopePerHour(windowLows(after, 60))
        // A process that did not outlive the warm-up has no RSS after it.
        return { process: s.name, firstMb: after[0] ? Math.round(after[0][1]) : null, lastMb: Math.round(mbs.at(-1) ?? 0), maxMb: Math.round(Math.max(...mbs)), growthMbPerHour: after.length >= 3 ? Math.round(slopePerHour(after)!) : null, lowsGrowthMbPerHour: lows === null ? null : Math.round(lows), samples: s.samples.length }
      }),
      chain: { transactions, proofTransactions, generations: ok.length, perGeneration: ok.length ? transactions / ok.length : 0, proofsPerGeneration: ok.length ? proofTransactions / ok.length : 0 },
    }
    return report
  } finally {
    for (const c of children) if (c.child.exitCode === null && c.child.signalCode === null && c.name !== 'oracle') c.child.kill('SIGTERM')
    await Promise.race([Promise.all(children.filter((c) => c.name !== 'oracle').map((c) => (c.child.exitCode === null && c.child.signalCode === null ? new Promise((r) => c.child.once('exit', r)) : undefined))), sleep(10_000)])
    for (const c of children) if (c.child.exitCode === null && c.child.signalCode === null) c.child.kill('SIGKILL')
    await devnet?.close()
    if (!process.env.SOAK_KEEP) await rm(dir, { recursive: true, force: true })
  }
}

async function waitUntil(check: () => Promise<boolean>, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs
  while (Date.now() < deadline) {
    if (await check().catch(() => false)) return true
    await sleep(500)
  }
  return false
}

export function formatSoakTable(r: SoakReport): string {
  const pct = (x: number) => `${(x * 100).toFixed(2)} %`
  const lines = [
    `soak: ${r.minutes} min, ${r.clients} clients, a non-origin host killed every ${r.killEverySec} s`,
    `requests ${r.requests}, answered ${r.answered} (${pct(r.successRate)}); while every layer had a live copy: ${r.coveredRequests} (${pct(r.coveredSuccessRate)})`,
    `failures by status: ${JSON.stringify(r.failures)}; identical greedy answers: ${r.identicalGreedy ? 'yes' : 'NO'}`,
    `latency ms: p50 ${r.latencyMs.p50}, p95 ${r.latencyMs.p95}, p99 ${r.latencyMs.p99}, max ${r.latencyMs.max}`,
    '',
    'kill at (s) | layers | last copy | coverage lost (s) | back (s) | first answer after loss (s) | failed',
    ...r.kills.map((k) => `${k.atS} | ${k.range} | ${k.lastCopy ? 'yes' : 'no'} | ${k.coverageLostS ?? '-'} | ${k.coverageBackS ?? '-'} | ${k.recoverS ?? '-'} | ${k.failedDuring}`),
    '',
    `RSS after a warm-up of ${r.warmupSec} s per process:`,
    'process | RSS after warm-up (MB) | last | max | growth after warm-up MB/h | growth of minute lows MB/h | samples',
    ...r.rss.map((p) => `${p.process} | ${p.firstMb ?? '-'} | ${p.lastMb} | ${p.maxMb} | ${p.growthMbPerHour ?? '-'} | ${p.lowsGrowthMbPerHour ?? '-'} | ${p.samples}`),
    '',
    `chain: ${r.chain.transactions} transactions (${r.chain.proofTransactions} verifyInference) for ${r.chain.generations} generations: ${r.chain.perGeneration.toFixed(3)} per generation (${r.chain.proofsPerGeneration.toFixed(3)} proofs)`,
  ]
  return lines.join('\n')
}
