import { mkdir } from 'node:fs/promises'
import { homedir } from 'node:os'
import { join, resolve } from 'node:path'
import { parseArgs } from 'node:util'
import { UsageError } from '../cli/usageError.ts'
import { buildApp } from '../app/buildApp.ts'
import { createAppServer, type AppServer } from '../app/createAppServer.ts'
import { networkAppConfig } from '../app/networkAppConfig.ts'
import { createLogger } from '../logger.ts'
import { readAvailableMemory } from './browserMemory.ts'
import { chainConfigFromEnv } from '../chain/chainConfigFromEnv.ts'
import { loadWallet } from '../chain/loadWallet.ts'
import { createFarmMetrics } from './farmMetrics.ts'
import type { FarmGpu } from './farmPage.ts'
import { startFarmPayouts, type FarmPayouts } from './farmPayouts.ts'
import { startFarmStatusServer, summarize, type FarmStatus, type FarmWorkerStatus } from './farmStatusServer.ts'
import { createFarmWallet, type FarmWallet } from './farmWallet.ts'
import { watchOracleServed } from './watchOracleServed.ts'
import { renderFarmTable } from './farmTable.ts'
import { superviseWorker, type SupervisedWorker, type WorkerSnapshot } from './superviseWorker.ts'

export const FARM_USAGE = `usage: shardmesh farm --workers N [--oracle http://127.0.0.1:3100] [--app <url>] [--chromium /usr/bin/chromium] [--gpu auto|swiftshader|off]
                     [--profiles ~/.shardmesh/farm] [--memory-mb M] [--status-port P] [--payout-s 60] [--headful]
                     [--relay <ws multiaddr>]… [--devtools]
       N headless contributor pages, each its own Chromium and profile (its peer id survives restarts), kept
       contributing: a page that crashes, hangs, loses its GPU or runs out of memory is restarted (1, 2, 4 … 60 s).
       Without --app the farm serves the app itself, offering the pages --relay (default: the node hosts' from the Oracle's
       topology; a network of pages only needs one, e.g. \`shardmesh origin\`'s). GET /status and /metrics at --status-port;
       Ctrl-C leaves the Oracle cleanly. --devtools: each worker's Chromium also listens for DevTools on a loopback port of
       its own (its URL is the worker's devtoolsUrl in /status): attach to inspect, profile or debug a page.
       Payouts: with PLUMISE_PRIVATE_KEY (or PLUMISE_KEYSTORE) set, each page is bound to a wallet derived from the
       farm's (the Oracle credits its served work there) and its rewards are claimed into the farm wallet.`

export type FarmOptions = {
  workers: number
  oracle: string
  app?: string
  chromium: string
  gpu: FarmGpu
  profiles: string
  /** Memory the workers may use; absent: what the machine has available now. */
  memoryMb?: number
  statusPort?: number
  headful: boolean
  /** MB each page offers the Oracle. */
  pageMemoryMb?: number
  /** Relays the served app offers the pages; absent: the node hosts' in the Oracle's topology. */
  relays?: string[]
  /** Each worker's browser listens for DevTools on a loopback port (`--remote-debugging-port=0`). */
  devtools?: boolean
  /** How often the workers' pending rewards are checked and claimed into the farm wallet, seconds. @default 60 */
  payoutS?: number
}

/**
 * What one worker is expected to take before it has run: its own Chromium (browser, GPU and utility
 * processes, ~150 MB PSS) and a page with a shard of docs-llama-7m on wasm (~400-550 MB PSS); measured
 * 520-700 MB a worker (`npm run bench -- farm`: 567 MB). A farm whose pages hold larger shards needs
 * --memory-mb set accordingly.
 */
export const WORKER_ESTIMATE_MB = 700

const int = (name: string, v: string | undefined, min: number) => {
  if (v === undefined) return undefined
  const n = Number(v)
  if (!Number.isInteger(n) || n < min) throw new UsageError(`--${name} must be an integer ≥ ${min}, got "${v}"`)
  return n
}

export function parseFarmArgs(argv: string[]): FarmOptions {
  const { values } = parseArgs({
    args: argv,
    options: {
      workers: { type: 'string' },
      oracle: { type: 'string' },
      app: { type: 'string' },
      chromium: { type: 'string' },
      gpu: { type: 'string' },
      profiles: { type: 'string' },
      'memory-mb': { type: 'string' },
      'status-port': { type: 'string' },
      'page-memory-mb': { type: 'string' },
      'payout-s': { type: 'string' },
      headful: { type: 'boolean' },
      relay: { type: 'string', multiple: true },
      devtools: { type: 'boolean' },
    },
    strict: true,
  })
  const workers = int('workers', values.workers, 1)
  if (workers === undefined) throw new UsageError('--workers N is required')
  const oracle = values.oracle ?? process.env.ORACLE_URL ?? 'http://127.0.0.1:3100'
  if (!URL.canParse(oracle)) throw new UsageError(`--oracle must be a URL, got "${oracle}"`)
  if (values.app !== undefined && !URL.canParse(values.app)) throw new UsageError(`--app must be a URL, got "${values.app}"`)
  const gpu = values.gpu ?? 'auto'
  if (gpu !== 'auto' && gpu !== 'swiftshader' && gpu !== 'off') throw new UsageError(`--gpu must be auto, swiftshader or off, got "${gpu}"`)
  for (const r of values.relay ?? []) if (!r.startsWith('/') || !r.includes('/ws')) throw new UsageError(`--relay must be a WebSocket multiaddr (…/ws/p2p/<peer id>), got "${r}"`)
  if (values.relay?.length && values.app !== undefined) throw new UsageError('--relay configures the app the farm serves: not with --app (give the relays to that app server instead)')
  const statusPort = int('status-port', values['status-port'], 0)
  if (statusPort !== undefined && statusPort > 65535) throw new UsageError(`--status-port must be a port number, got "${statusPort}"`)
  return {
    workers,
    oracle,
    app: values.app,
    chromium: values.chromium ?? process.env.SHARDMESH_CHROMIUM ?? '/usr/bin/chromium',
    gpu,
    profiles: resolve(values.profiles ?? join(homedir(), '.shardmesh', 'farm')),
    memoryMb: int('memory-mb', values['memory-mb'], 1),
    statusPort,
    headful: values.headful ?? false,
    pageMemoryMb: int('page-memory-mb', values['page-memory-mb'], 1),
    payoutS: int('payout-s', values['payout-s'], 1),
    ...(values.relay?.length ? { relays: values.relay } : {}),
    devtools: values.devtools ?? false,
  }
}

/** More workers asked for than the memory holds. */
export class FarmMemoryError extends Error {
  readonly workers: number
  readonly fit: number
  readonly memoryMb: number
  constructor(workers: number, fit: number, memoryMb: number) {
    super(`${workers} workers need about ${workers * WORKER_ESTIMATE_MB} MB (${WORKER_ESTIMATE_MB} MB each: its Chromium and page); ${memoryMb} MB is available: ${fit} fit. Start with --workers ${fit}, or raise --memory-mb.`)
    this.workers = workers
    this.fit = fit
    this.memoryMb = memoryMb
  }
}

/** How many workers `memoryMb` holds, or a FarmMemoryError naming how many fit. */
export function checkFarmMemory(workers: number, memoryMb: number): void {
  const fit = Math.floor(memoryMb / WORKER_ESTIMATE_MB)
  if (workers > fit) throw new FarmMemoryError(workers, fit, memoryMb)
}

export type Farm = { appUrl: string; statusUrl?: string; status(): FarmStatus; snapshot(): WorkerSnapshot[]; stop(): Promise<void> }

/** The farm wallet from the environment (PLUMISE_PRIVATE_KEY or keystore, and the chain), or undefined when none is set. */
export async function farmWalletFromEnv(env: Record<string, string | undefined> = process.env): Promise<FarmWallet | undefined> {
  if (!env.PLUMISE_PRIVATE_KEY && !env.PLUMISE_KEYSTORE) return undefined
  return createFarmWallet({ account: await loadWallet({ env }), chain: await chainConfigFromEnv(env), logger: createLogger('shardmesh:farm') })
}

/**
 * Runs the farm: checks the memory, serves the app (unless --app), starts one supervised worker a
 * profile folder, the status server and the live table (a TTY) or JSON lines (otherwise). The
 * wallet is issue 11's farm wallet: one key in this process for every page.
 */
export async function runFarm(opts: FarmOptions, components: { wallet?: FarmWallet } = {}): Promise<Farm> {
  const memoryMb = opts.memoryMb ?? Math.floor((await readAvailableMemory()) / 2 ** 20)
  checkFarmMemory(opts.workers, memoryMb)
  const logger = createLogger('shardmesh:farm')
  let appServer: AppServer | undefined
  let appUrl = opts.app
  if (!appUrl) {
    appServer = await createAppServer({
      dir: buildApp({ onBuild: () => process.stderr.write('shardmesh farm: building the app (cached until its sources change)…\n') }),
      oracle: opts.oracle,
      config: networkAppConfig({ oracle: opts.oracle, relays: opts.relays }),
      port: 0,
    })
    appUrl = appServer.url
    // Pages must not load a "building" page: wait for the built app.
    for (let i = 0; ; i++) {
      const r = await fetch(appUrl).catch(() => undefined)
      if (r?.status === 200) break
      if (i > 600) throw new Error('the app did not build within 10 minutes')
      await new Promise((res) => setTimeout(res, 1000))
    }
  }
  const tty = process.stdout.isTTY === true
  const workers: SupervisedWorker[] = []
  const snapshot = () => workers.map((w) => w.snapshot())
  const wallet = components.wallet ?? (await farmWalletFromEnv())
  const served = watchOracleServed({ oracle: opts.oracle, logger })
  const payouts: FarmPayouts | undefined = wallet && startFarmPayouts({ wallet, workers: Array.from({ length: opts.workers }, (_, i) => i + 1), logger, pollMs: (opts.payoutS ?? 60) * 1000 })
  // Each worker with what the Oracle counted its page served, and its wallet's pending reward.
  const farmStatus = (): FarmStatus =>
    summarize(
      snapshot().map((w): FarmWorkerStatus => {
        const n = served.of(w.peerId)
        const pending = payouts?.pendingOf(w.worker)
        return { ...w, ...(n ? { served: { tokensPerSecond: n.tokensPerSecond, tokens: n.tokens, wallet: n.wallet } } : {}), ...(pending !== undefined ? { pendingWei: pending.toString() } : {}) }
      }),
      wallet && payouts
        ? {
            address: wallet.address,
            pendingWei: Array.from({ length: opts.workers }, (_, i) => payouts.pendingOf(i + 1) ?? 0n).reduce((a, b) => a + b, 0n).toString(),
            claimedWei: payouts.claimedWei().toString(),
          }
        : undefined,
    )
  const metrics = createFarmMetrics(farmStatus)
  const status = await (opts.statusPort === undefined ? undefined : startFarmStatusServer({ port: opts.statusPort, status: farmStatus, metrics: () => metrics.render() }))
  if (wallet) logger.info({ farmWallet: wallet.address }, 'farm wallet: each page is bound to a wallet of its own derived from it; rewards are claimed into it')
  logger.info({ workers: opts.workers, app: appUrl, oracle: opts.oracle, status: status?.url, profiles: opts.profiles, memoryMb }, 'farm starting')
  for (let i = 1; i <= opts.workers; i++) {
    const profileDir = join(opts.profiles, `worker-${i}`)
    await mkdir(profileDir, { recursive: true })
    let last = ''
    workers.push(
      superviseWorker({
        worker: i,
        appUrl,
        profileDir,
        chromiumPath: opts.chromium,
        gpu: opts.gpu,
        headful: opts.headful,
        memoryMb: opts.pageMemoryMb,
        devtools: opts.devtools,
        wallet,
        logger,
        onChange: (s) => {
          if (tty) return
          // JSON lines on stdout when it is not a terminal: one a change of what a reader acts on.
          const line = JSON.stringify({ worker: s.worker, state: s.state, phase: s.phase, peerId: s.peerId, range: s.range, restarts: s.restarts, crashLoop: s.crashLoop })
          if (line !== last) process.stdout.write(`${JSON.stringify({ time: Date.now(), ...s })}\n`)
          last = line
        },
      }),
    )
  }
  const table = tty ? setInterval(() => process.stdout.write(`\x1b[H\x1b[2J${renderFarmTable(farmStatus())}\n${status ? `status: ${status.url}\n` : ''}`), 1000) : undefined
  return {
    appUrl,
    statusUrl: status?.url,
    status: farmStatus,
    snapshot,
    async stop() {
      clearInterval(table)
      served.stop()
      payouts?.stop()
      await Promise.all(workers.map((w) => w.stop()))
      await status?.close()
      await appServer?.close()
      logger.info('farm stopped: every page left the Oracle')
    },
  }
}

/** `shardmesh farm`: runs until SIGINT or SIGTERM, then stops every page (each tells the Oracle) and exits 0. */
export async function runFarmCommand(argv: string[]): Promise<number> {
  const farm = await runFarm(parseFarmArgs(argv))
  await new Promise<void>((resolve) => {
    process.once('SIGINT', () => resolve())
    process.once('SIGTERM', () => resolve())
  })
  await farm.stop()
  return 0
}
