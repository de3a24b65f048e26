import { spawn, type ChildProcess } from 'node:child_process'
import { mkdir } from 'node:fs/promises'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { parseModelConfig } from '../../shared/model/modelSpec.ts'
import { REPO_ROOT } from '../testing/fixtures.ts'
import { resolveModelSource } from '../model/resolveModelSource.ts'
import { freePort } from '../net/freePort.ts'

export const LOCAL_USAGE = `usage: shardmesh local [--model <folder|url|owner/name>] [--hosts 3] [--api-port 31331] [--device cpu]`

const MAIN = fileURLToPath(new URL('./main.ts', import.meta.url))


/** Cuts `[0, L)` into `n` contiguous ranges of near-equal size. */
export function splitLayers(numLayers: number, n: number): Array<{ start: number; end: number }> {
  const count = Math.min(n, numLayers)
  return Array.from({ length: count }, (_, i) => ({ start: Math.round((i * numLayers) / count), end: Math.round(((i + 1) * numLayers) / count) }))
}

/**
 * A whole network on this machine: node hosts as separate processes serving the model in
 * contiguous ranges over libp2p on loopback, the first with the HTTP API. Ctrl-C stops them all.
 */
export async function runLocalNetwork(argv: string[]): Promise<void> {
  const { values } = parseArgs({ args: argv, options: { model: { type: 'string' }, hosts: { type: 'string' }, 'api-port': { type: 'string' }, device: { type: 'string' } }, strict: true })
  const source = resolveModelSource(values.model)
  const spec = parseModelConfig(await source.readText('config.json'))
  const ranges = splitLayers(spec.numLayers, Number(values.hosts ?? 3))
  const apiPort = Number(values['api-port'] ?? process.env.API_PORT ?? 31331)
  const device = values.device ?? 'cpu'
  const home = join(REPO_ROOT, '.cache', 'local-network')
  await mkdir(home, { recursive: true })
  const ports = await Promise.all(ranges.map(() => freePort()))
  const children: ChildProcess[] = []
  const stopAll = (signal: NodeJS.Signals) => {
    for (const c of children) if (c.exitCode === null) c.kill(signal)
  }
  process.once('SIGINT', () => stopAll('SIGINT'))
  process.once('SIGTERM', () => stopAll('SIGTERM'))

  ranges.forEach((range, i) => {
    const args = [MAIN, 'start', '--layers', `${range.start}-${range.end}`, '--device', device, '--listen', `/ip4/127.0.0.1/tcp/${ports[i]}`, '--listen', '/ip4/127.0.0.1/tcp/0/ws', '--identity', join(home, `host-${i}.key`)]
    if (values.model) args.push('--model', values.model)
    if (i === 0) {
      args.push('--api-port', String(apiPort))
      for (const p of ports.slice(1)) args.push('--peer', `/ip4/127.0.0.1/tcp/${p}`)
    }
    const child = spawn(process.execPath, args, { stdio: ['ignore', 'inherit', 'inherit'], env: { ...process.env, LOG_LEVEL: process.env.LOG_LEVEL ?? 'info' } })
    children.push(child)
  })
  const exited = Promise.all(children.map((c) => new Promise<void>((resolve) => c.once('exit', () => resolve()))))
  children.forEach((c, i) =>
    c.once('exit', (code, signal) => {
      if (signal === null && code !== 0) {
        process.stderr.write(`shardmesh local: host ${i} exited with code ${code}; stopping the network\n`)
        stopAll('SIGTERM')
      }
    }),
  )

  const url = `http://127.0.0.1:${apiPort}`
  for (let tries = 0; tries < 600; tries++) {
    const health = await fetch(`${url}/health`).then((r) => r.json() as Promise<{ status: string }>, () => null)
    if (health?.status === 'ok') break
    if (children.some((c) => c.exitCode !== null)) break
    await new Promise((r) => setTimeout(r, 200))
  }
  if (children.every((c) => c.exitCode === null)) {
    process.stdout.write(
      `\nshardmesh: ${ranges.length} node hosts serve ${source.name} (layers ${ranges.map((r) => `${r.start}-${r.end}`).join(', ')}) over libp2p on loopback.\n` +
        `The first host is the origin, with the HTTP API at ${url}. Try:\n\n` +
        `  curl -s ${url}/v1/completions -H 'Content-Type: application/json' -d '{"prompt": "The pipeline splits the model into layer ranges and", "max_tokens": 32, "temperature": 0}'\n` +
        `  curl -sN ${url}/api/v1/generate -H 'Content-Type: application/json' -d '{"inputs": "def forward(self, x):", "parameters": {"max_new_tokens": 40}, "stream": true}'\n\n` +
        `Ctrl-C stops the network.\n\n`,
    )
  }
  await exited
}
