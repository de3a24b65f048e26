import { test } from 'node:test'
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { join } from 'node:path'
import { missingNodeFlags, SERVER_NODE_FLAGS } from './serverNodeFlags.ts'

test('a flag given on the command line or in NODE_OPTIONS, with either spelling, is not missing', () => {
  assert.deepEqual(missingNodeFlags(SERVER_NODE_FLAGS, [], undefined), ['--max-semi-space-size=16', '--heap-growing-percent=300'])
  assert.deepEqual(missingNodeFlags(SERVER_NODE_FLAGS, ['--max-semi-space-size=8', '--heap-growing-percent=0'], undefined), [])
  assert.deepEqual(missingNodeFlags(SERVER_NODE_FLAGS, ['--heap_growing_percent=100'], '--import x.mjs --max_semi_space_size=32'), [])
  assert.deepEqual(missingNodeFlags(SERVER_NODE_FLAGS, ['--max-old-space-size=4096'], '--import x.mjs'), ['--max-semi-space-size=16', '--heap-growing-percent=300'])
})

test('a server command runs under the server flags, in the process it was started as', () => {
  // An unknown option makes `oracle` fail after the re-exec. A preload prints the pid and execArgv of
  // every process it starts in, so the output shows what the re-executed process ran with.
  const probe = join(import.meta.dirname, '..', '..', 'testing', 'printExecArgv.mjs')
  const r = spawnSync(process.execPath, ['--import', probe, join(import.meta.dirname, 'main.ts'), 'oracle', '--no-such-option'], { encoding: 'utf8', env: { ...process.env, NODE_OPTIONS: '' } })
  const lines = r.stdout.trim().split('\n').map((l) => JSON.parse(l) as { pid: number; execArgv: string[] })
  assert.equal(lines.length, 2, r.stdout + r.stderr)
  assert.equal(lines[0]!.pid, lines[1]!.pid)
  assert.ok(!lines[0]!.execArgv.includes('--max-semi-space-size=16'))
  assert.ok(lines[1]!.execArgv.includes('--max-semi-space-size=16'))
  assert.ok(lines[1]!.execArgv.includes('--heap-growing-percent=300'))
  assert.notEqual(r.status, 0)
})
