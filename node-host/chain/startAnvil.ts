import { spawn, type ChildProcess } from 'node:child_process'
import { existsSync } from 'node:fs'
import { createRequire } from 'node:module'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { freePort } from '../net/freePort.ts'

/** anvil's well-known test mnemonic: deterministic dev accounts (public keys, never for real value). */
export const ANVIL_MNEMONIC = 'test test test test test test test test test test test junk'

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..')

/** The platform binary of @foundry-rs/anvil (no Node wrapper in between, so a kill reaches anvil itself). */
export function anvilBinary(): string {
  const arch = ({ x64: 'amd64', arm64: 'arm64' } as Record<string, string>)[process.arch] ?? process.arch
  const os = process.platform === 'win32' ? 'win32' : process.platform
  try {
    const require = createRequire(join(ROOT, 'package.json'))
    const bin = require.resolve(`@foundry-rs/anvil-${os}-${arch}/bin/anvil${os === 'win32' ? '.exe' : ''}`)
    if (existsSync(bin)) return bin
  } catch {
    // fall back to the npm wrapper
  }
  return join(ROOT, 'node_modules', '.bin', 'anvil')
}

export type StartAnvilOptions = {
  /** @default a free port */
  port?: number
  /** @default 31337 */
  chainId?: number
  /** Also mine an empty block every this many seconds (transactions still mine at once). @default 0: only on transactions */
  blockTime?: number
  /** @default 10 */
  accounts?: number
  /** Ether per dev account. @default 10000 */
  balance?: number
  /**
   * Keep no historical state (`--prune-history`): reads at past blocks fail, blocks, receipts and
   * logs stay. anvil 1.7 otherwise keeps every block's state in memory; with a block a second and
   * the contracts' growing storage that measured 1 GB/h (the soak bench). A number of states
   * (`--prune-history N`) did not bound it in the same measurement, so it is all or nothing.
   * @default false
   */
  pruneHistory?: boolean
  signal?: AbortSignal
}

export type Anvil = {
  rpcUrl: string
  port: number
  chainId: number
  process: ChildProcess
  /** Stops anvil (SIGTERM, then SIGKILL after 2 s) and resolves when it has exited. */
  close(): Promise<void>
}

export class AnvilStartError extends Error {
  constructor(message: string) {
    super(message)
    this.name = 'AnvilStartError'
  }
}

const live = new Set<ChildProcess>()
let exitHookInstalled = false
function killOnExit(child: ChildProcess): void {
  live.add(child)
  child.once('exit', () => live.delete(child))
  if (exitHookInstalled) return
  exitHookInstalled = true
  process.once('exit', () => {
    for (const c of live) c.kill('SIGKILL')
  })
}

async function answers(rpcUrl: string): Promise<boolean> {
  try {
    const res = await fetch(rpcUrl, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"jsonrpc":"2.0","id":1,"method":"eth_chainId","params":[]}' })
    return res.ok
  } catch {
    return false
  }
}

async function startOnce(port: number, o: StartAnvilOptions): Promise<Anvil> {
  const chainId = o.chainId ?? 31337
  const args = ['--host', '127.0.0.1', '--port', String(port), '--chain-id', String(chainId), '--mnemonic', ANVIL_MNEMONIC]
  args.push('--accounts', String(o.accounts ?? 10), '--balance', String(o.balance ?? 10_000))
  if (o.blockTime) args.push('--block-time', String(o.blockTime), '--mixed-mining')
  if (o.pruneHistory) args.push('--prune-history')
  const child = spawn(anvilBinary(), args, { stdio: ['ignore', 'ignore', 'pipe'] })
  killOnExit(child)
  let stderr = ''
  child.stderr!.on('data', (d: Buffer) => (stderr = (stderr + d.toString()).slice(-4000)))
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)))
  const rpcUrl = `http://127.0.0.1:${port}`
  const close = async () => {
    if (child.exitCode !== null || child.signalCode !== null) return
    child.kill('SIGTERM')
    const timer = setTimeout(() => child.kill('SIGKILL'), 2000)
    await exited
    clearTimeout(timer)
  }
  const deadline = Date.now() + 15_000
  let dead = false
  void exited.then(() => (dead = true))
  while (!(await answers(rpcUrl))) {
    if (dead) throw new AnvilStartError(`anvil exited before answering on ${rpcUrl}: ${stderr.trim() || 'no output'}`)
    if (o.signal?.aborted || Date.now() > deadline) {
      await close()
      throw new AnvilStartError(o.signal?.aborted ? 'anvil start aborted' : `anvil did not answer on ${rpcUrl} within 15 s: ${stderr.trim()}`)
    }
    await new Promise((r) => setTimeout(r, 50))
  }
  o.signal?.addEventListener('abort', () => void close(), { once: true })
  return { rpcUrl, port, chainId, process: child, close }
}

/** Starts anvil on 127.0.0.1 and resolves once it answers JSON-RPC. */
export async function startAnvil(options: StartAnvilOptions = {}): Promise<Anvil> {
  for (let attempt = 0; ; attempt++) {
    try {
      return await startOnce(options.port ?? (await freePort()), options)
    } catch (e) {
      // a free port can be taken between freePort() and anvil's bind: try another
      if (options.port !== undefined || attempt >= 2 || !/in use|bind/i.test((e as Error).message)) throw e
    }
  }
}
