import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { mkdtemp } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { test } from 'node:test'
import { freePort } from '../net/freePort.ts'
import { prettyLogs } from '../logger.ts'
import { takeLogLevel } from './logLevelOption.ts'
import { UsageError } from './usageError.ts'

test('--log-level is taken from any command\'s arguments into LOG_LEVEL; a wrong level is a usage error', () => {
  const env: Record<string, string | undefined> = {}
  assert.deepEqual(takeLogLevel(['oracle', '--port', '0', '--log-level', 'debug', '--replicas', '1'], env), ['oracle', '--port', '0', '--replicas', '1'])
  assert.equal(env.LOG_LEVEL, 'debug')
  assert.deepEqual(takeLogLevel(['start', '--log-level=WARN'], env), ['start'])
  assert.equal(env.LOG_LEVEL, 'warn')
  assert.throws(() => takeLogLevel(['start', '--log-level', 'loud'], {}), UsageError)
  assert.throws(() => takeLogLevel(['start', '--log-level'], {}), UsageError)
  assert.throws(() => takeLogLevel(['start'], { LOG_LEVEL: 'chatty' }), /LOG_LEVEL/)
  assert.equal(prettyLogs({}, true), true)
  assert.equal(prettyLogs({}, false), false)
  assert.equal(prettyLogs({ LOG_FORMAT: 'json' }, true), false)
})

// A command's log lines, through the real CLI (an Oracle on a free port, stopped once it answers
// /health): JSON lines on a pipe, pino-pretty text on a terminal (`script` gives the child a
// pseudo-terminal), none below the level.
const logsOf = async (args: string[], env: Record<string, string>, tty = false): Promise<string> => {
  const dir = await mkdtemp(join(tmpdir(), 'log-level-'))
  const port = await freePort()
  const cli = ['node-host/cli/main.ts', 'oracle', '--port', String(port), '--db', join(dir, 'o.db'), ...args]
  const child = tty
    ? spawn('script', ['-qec', [process.execPath, ...cli].map((a) => `'${a}'`).join(' '), '/dev/null'], { env: { ...process.env, ...env } })
    : spawn(process.execPath, cli, { env: { ...process.env, ...env } })
  let out = ''
  child.stdout.on('data', (d: Buffer) => (out += d.toString()))
  child.stderr.on('data', (d: Buffer) => (out += d.toString()))
  const exited = new Promise((r) => child.once('exit', r))
  const deadline = Date.now() + 30_000
  let up = false
  while (!up && Date.now() < deadline) {
    up = await fetch(`http://127.0.0.1:${port}/health`).then((r) => r.ok, () => false)
    if (!up) await new Promise((r) => setTimeout(r, 100))
  }
  await new Promise((r) => setTimeout(r, 200))
  child.kill('SIGTERM')
  await exited
  assert.ok(up, `the oracle never answered /health: ${out.slice(0, 500)}`)
  // Colours off: what a person reads.
  return out.replace(/\x1B\[[0-9;]*m/g, '')
}

test('every command logs pino JSON on a pipe and pino-pretty on a terminal, at the level asked', async () => {
  const json = await logsOf([], { LOG_LEVEL: 'info', LOG_FORMAT: '' })
  const line = json.split('\n').find((l) => l.includes('oracle listening'))
  assert.ok(line, json.slice(0, 500))
  assert.equal((JSON.parse(line) as { level: number; name: string }).name, 'shardmesh:oracle')
  const quiet = await logsOf(['--log-level', 'warn'], { LOG_FORMAT: '' })
  assert.doesNotMatch(quiet, /oracle listening/)
  const pretty = await logsOf([], { LOG_LEVEL: 'info', LOG_FORMAT: '' }, true)
  assert.match(pretty, /INFO \(shardmesh:oracle\/\d+\): oracle listening/)
  assert.doesNotMatch(pretty, /"msg":"oracle listening/)
})
