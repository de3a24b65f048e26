import { spawn, type ChildProcess } from 'node:child_process'
import { join } from 'node:path'
import { REPO_ROOT } from '../testing/fixtures.ts'

const MAIN = join(REPO_ROOT, 'node-host', 'cli', 'main.ts')

/** A `shardmesh` command run as its own process, its output kept for assertions and failure reports. */
export type CliProcess = { child: ChildProcess; log: string[]; exited: Promise<void> }

export function spawnCli(args: string[], env: Record<string, string> = {}): CliProcess {
  const child = spawn(process.execPath, [MAIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, LOG_LEVEL: 'info', ...env } })
  const log: string[] = []
  child.stdout!.on('data', (c: Buffer) => log.push(c.toString()))
  child.stderr!.on('data', (c: Buffer) => log.push(c.toString()))
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()))
  return { child, log, exited }
}

/** Polls `fn` until it gives a value (a throw counts as none); on timeout, fails with the tail of the processes' logs. */
export async function waitFor<T>(what: string, fn: () => Promise<T | undefined>, timeoutMs: number, logs: () => string): Promise<T> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const value = await fn().catch(() => undefined)
    if (value !== undefined) return value
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}\n${logs().slice(-4000)}`)
    await new Promise((r) => setTimeout(r, 200))
  }
}
