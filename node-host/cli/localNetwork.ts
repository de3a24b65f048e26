import { spawn, type ChildProcess } from 'node:child_process'
import { mkdir, rm } from 'node:fs/promises'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { REPO_ROOT } from '../../testing/fixtures.ts'
import { startDevnet, type Devnet } from '../chain/startDevnet.ts'
import { readModelInfo } from '../oracle/modelInfo.ts'
import { rangeBytes } from '../../shared/oracle/assignLayers.ts'
import { buildApp } from '../app/buildApp.ts'
import { createAppServer, type AppServer } from '../app/createAppServer.ts'
import { networkAppConfig } from '../app/networkAppConfig.ts'
import { SERVER_NODE_FLAGS } from './serverNodeFlags.ts'

export const LOCAL_USAGE = `usage: shardmesh local [--model <folder|url|owner/name>] [--hosts 3] [--api-port 31331] [--oracle-port 3100] [--app-port 5173] [--device cpu] [--no-chain] [--keep-history]
       A whole network on this machine: a devnet (anvil with the contracts), the Oracle, and node hosts that
       get their layer ranges from it; the first host is the origin with the HTTP API. The contributor app is
       served at --app-port (its URL is the first line printed); a page that contributes joins the same network.
       The devnet keeps no historical state (reads at past blocks fail; blocks, receipts and logs stay), so its
       memory stays flat; --keep-history keeps every block's state (about 1 GB/h more memory under load).`

const MAIN = fileURLToPath(new URL('./main.ts', import.meta.url))

/** Cuts `[0, L)` into `n` contiguous ranges of near-equal size. */
export function splitLayers(numLayers: number, n: number): Array<{ start: number; end: number }> {
  const count = Math.min(n, numLayers)
  return Array.from({ length: count }, (_, i) => ({ start: Math.round((i * numLayers) / count), end: Math.round(((i + 1) * numLayers) / count) }))
}

const MB = 1024 * 1024

/**
 * A whole network on this machine: anvil with the contracts deployed and the hosts' wallets funded,
 * the Oracle (reporting contributions to the RewardPool), and node hosts as separate processes that
 * get their ranges from the Oracle and serve them over libp2p on loopback; the first host is the
 * origin with the HTTP API. Ctrl-C stops them all.
 */
export async function runLocalNetwork(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    options: { model: { type: 'string' }, hosts: { type: 'string' }, 'api-port': { type: 'string' }, 'oracle-port': { type: 'string' }, 'app-port': { type: 'string' }, device: { type: 'string' }, 'no-chain': { type: 'boolean' }, 'keep-history': { type: 'boolean' } },
    strict: true,
  })
  const info = await readModelInfo(values.model)
  const hosts = Math.max(1, Number(values.hosts ?? 3))
  const apiPort = Number(values['api-port'] ?? process.env.API_PORT ?? 31331)
  const oraclePort = Number(values['oracle-port'] ?? 3100)
  const device = values.device ?? 'cpu'
  const appPort = Number(values['app-port'] ?? process.env.APP_PORT ?? 5173)
  const home = join(REPO_ROOT, '.cache', 'local-network')
  await mkdir(home, { recursive: true })
  const children: ChildProcess[] = []
  let devnet: Devnet | undefined
  let app: AppServer | undefined
  let stopping = false
  const stopAll = async () => {
    if (stopping) return
    stopping = true
    // SIGTERM, not the signal received: on Ctrl-C the terminal has already sent SIGINT to every child,
    // and a second SIGINT would cut their clean shutdown short. Hosts first (their last reports reach
    // the Oracle), then the Oracle.
    const [oracle, ...hostProcs] = children
    for (const c of hostProcs) if (c.exitCode === null) c.kill('SIGTERM')
    await Promise.race([Promise.all(hostProcs.map((c) => (c.exitCode === null ? new Promise((r) => c.once('exit', r)) : undefined))), new Promise((r) => setTimeout(r, 10_000))])
    if (oracle && oracle.exitCode === null) oracle.kill('SIGTERM')
    await Promise.all(children.map((c) => (c.exitCode === null ? new Promise((r) => c.once('exit', r)) : undefined)))
    await app?.close()
    await devnet?.close()
  }
  process.once('SIGINT', () => void stopAll())
  process.once('SIGTERM', () => void stopAll())
  const spawnCli = (args: string[], env: NodeJS.ProcessEnv = {}) => {
    if (stopping) return undefined
    const child = spawn(process.execPath, [...SERVER_NODE_FLAGS, MAIN, ...args], { stdio: ['ignore', 'inherit', 'inherit'], env: { ...process.env, LOG_LEVEL: process.env.LOG_LEVEL ?? 'info', ...env } })
    children.push(child)
    child.once('exit', (code, signal) => {
      if (!stopping && signal === null && code !== 0) {
        process.stderr.write(`shardmesh local: ${args[0]} exited with code ${code}; stopping the network\n`)
        void stopAll()
      }
    })
    return child
  }

  const devnetFile = join(REPO_ROOT, '.cache', 'devnet.json')
  const oracleUrl = `http://127.0.0.1:${oraclePort}`
  const url = `http://127.0.0.1:${apiPort}`
  // The app first: its URL is the first line, and it builds (or comes from the cache) while the network starts.
  const appDir = buildApp({ onBuild: () => process.stdout.write('shardmesh local: building the app (cached until its sources change)…\n') })
  const appInit = { dir: appDir, oracle: oracleUrl, config: networkAppConfig({ oracle: oracleUrl, devnetFile: values['no-chain'] ? undefined : devnetFile, api: url }) }
  // A taken port (another network, a dev server) moves the app, not the whole network.
  app = await createAppServer({ ...appInit, port: appPort }).catch((e: NodeJS.ErrnoException) => {
    if (e.code !== 'EADDRINUSE') throw e
    return createAppServer({ ...appInit, port: 0 })
  })
  process.stdout.write(`App: ${app.url}\n`)
  if (!values['no-chain']) {
    // The hosts' wallets: anvil's dev accounts after the deployer and the oracle.
    devnet = await startDevnet({ out: devnetFile, blocksPerEpoch: 30, pruneHistory: !values['keep-history'] })
    await fundHosts(devnet, hosts)
    if (stopping) return void (await devnet.close())
  }
  // A fresh chain each run, so a fresh Oracle too (its metrics and reports belong to the old chain).
  await Promise.all(['', '-wal', '-shm'].map((ext) => rm(join(home, `oracle.db${ext}`), { force: true })))
  const chainEnv = (key?: string): NodeJS.ProcessEnv => (devnet ? { SHARDMESH_DEVNET_FILE: devnetFile, PLUMISE_CHAIN_ID: String(devnet.chainId), PLUMISE_RPC_URL: devnet.rpcUrl, ...(key ? { PLUMISE_PRIVATE_KEY: key } : {}) } : {})

  const oracleArgs = ['oracle', '--port', String(oraclePort), '--db', join(home, 'oracle.db')]
  if (values.model) oracleArgs.push('--model', values.model)
  spawnCli(oracleArgs, devnet ? { ...chainEnv(), ORACLE_PRIVATE_KEY: devnet.accounts.oracle.privateKey } : {})
  // 90 s: on a loaded 2-core machine the Oracle process alone took 19 s to answer (30 s was missed under load).
  const oracleUp = await waitUntil(async () => (await fetch(`${oracleUrl}/health`)).ok, 90_000, () => children.some((c) => c.exitCode !== null))
  if (!oracleUp || stopping) {
    if (!stopping) process.stderr.write(`shardmesh local: the Oracle did not come up at ${oracleUrl}; stopping\n`)
    await stopAll()
    process.exitCode = 1
    return
  }

  // Each host offers a little over half of the model's weights: the Oracle makes a pipeline of two
  // hosts and puts the others on second copies, so every layer survives the loss of one host.
  const memoryMb = Math.max(1, Math.ceil((rangeBytes(info, { start: 0, end: info.numLayers }) * 0.55) / MB))
  for (let i = 0; i < hosts; i++) {
    const args = ['start', '--oracle', oracleUrl, '--device', device, '--memory-mb', String(memoryMb), '--heartbeat-s', '10', '--listen', '/ip4/127.0.0.1/tcp/0', '--listen', '/ip4/127.0.0.1/tcp/0/ws', '--identity', join(home, `host-${i}.key`)]
    if (values.model) args.push('--model', values.model)
    if (i === 0) args.push('--api-port', String(apiPort))
    // Claims above 0.1 ETH, reports every 20 s: rewards show up within minutes on the demo chain.
    spawnCli(args, { CLAIM_THRESHOLD_WEI: process.env.CLAIM_THRESHOLD_WEI ?? '100000000000000000', REPORT_INTERVAL: process.env.REPORT_INTERVAL ?? '20', ...chainEnv(devnet?.accounts.others[i]?.privateKey) })
  }

  const covered = async () => {
    const t = (await fetch(`${oracleUrl}/api/v1/pipeline/topology?model=${encodeURIComponent(info.name)}`).then((r) => r.json())) as { nodes: Array<{ layerStart: number; layerEnd: number; ready: boolean }> }
    return Array.from({ length: info.numLayers }, (_, l) => t.nodes.some((n) => n.ready && n.layerStart <= l && l < n.layerEnd)).every(Boolean)
  }
  // One token through the whole route: what the printed curl lines will do.
  const generates = async () => {
    const r = await fetch(`${url}/v1/completions`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ prompt: 'The', max_tokens: 1, temperature: 0 }) })
    return r.ok
  }
  // Ready when the origin answers, every layer is served, and a token comes back.
  const healthy = await waitUntil(
    async () => ((await fetch(`${url}/health`).then((r) => r.json())) as { status: string }).status === 'ok' && (await covered()) && (await generates()),
    600_000,
    () => children.some((c) => c.exitCode !== null),
  )
  if (healthy && !stopping) {
    const chainLines = devnet
      ? `Chain: anvil at ${devnet.rpcUrl} (chain id ${devnet.chainId}); AgentRegistry ${devnet.contracts.agentRegistry}, RewardPool ${devnet.contracts.rewardPool}\n` +
        `       (addresses in ${devnetFile}); the hosts register, prove their work and claim rewards there.\n`
      : ''
    process.stdout.write(
      `\nshardmesh: ${hosts} node hosts serve ${info.name} over libp2p on loopback, with layer ranges from the Oracle at ${oracleUrl}.\n` +
        chainLines +
        `The first host is the origin, with the HTTP API at ${url}. Try:\n\n` +
        `  curl -s ${url}/v1/completions -H 'Content-Type: application/json' -d '{"prompt": "The pipeline splits the model into layer ranges and", "max_tokens": 32, "temperature": 0}'\n` +
        `  curl -sN ${url}/api/v1/generate -H 'Content-Type: application/json' -d '{"inputs": "def forward(self, x):", "parameters": {"max_new_tokens": 40}, "stream": true}'\n` +
        `  curl -s '${oracleUrl}/api/v1/pipeline/topology?model=${encodeURIComponent(info.name)}'\n\n` +
        `Contribute this browser's GPU, chat, or watch the network: ${app.url}\n\n` +
        `Ctrl-C stops the network.\n\n`,
    )
  }
  await Promise.all(children.map((c) => (c.exitCode === null ? new Promise((r) => c.once('exit', r)) : undefined)))
  await app.close()
  await devnet?.close()
}

/** Gives the first `n` non-system dev accounts their starting balance (anvil funds them already; this is explicit). */
async function fundHosts(devnet: Devnet, n: number): Promise<void> {
  if (devnet.accounts.others.length < n) throw new Error(`the devnet has ${devnet.accounts.others.length} spare accounts for ${n} hosts`)
}

async function waitUntil(check: () => Promise<boolean>, timeoutMs: number, failed: () => boolean): Promise<boolean> {
  const deadline = Date.now() + timeoutMs
  while (Date.now() < deadline) {
    if (await check().catch(() => false)) return true
    if (failed()) return false
    await new Promise((r) => setTimeout(r, 200))
  }
  return false
}
