import assert from 'node:assert/strict'
import { test } from 'node:test'
import { UsageError } from '../cli/usageError.ts'
import { checkFarmMemory, FarmMemoryError, parseFarmArgs, WORKER_ESTIMATE_MB } from './farmCommand.ts'

test('farm arguments: --workers is required, --gpu is one of three, the rest default', () => {
  const o = parseFarmArgs(['--workers', '3', '--gpu', 'swiftshader', '--status-port', '0'])
  assert.equal(o.workers, 3)
  assert.equal(o.gpu, 'swiftshader')
  assert.equal(o.statusPort, 0)
  assert.equal(o.headful, false)
  assert.equal(o.app, undefined)
  assert.throws(() => parseFarmArgs([]), UsageError)
  assert.throws(() => parseFarmArgs(['--workers', '0']), UsageError)
  assert.throws(() => parseFarmArgs(['--workers', '2', '--gpu', 'cuda']), UsageError)
  assert.throws(() => parseFarmArgs(['--workers', '2', '--oracle', 'not a url']), UsageError)
})

test('more workers than the memory holds are refused, with how many fit', () => {
  checkFarmMemory(3, 3 * WORKER_ESTIMATE_MB)
  assert.throws(
    () => checkFarmMemory(8, 3 * WORKER_ESTIMATE_MB + 1),
    (e: unknown) => e instanceof FarmMemoryError && e.fit === 3 && /: 3 fit\. Start with --workers 3/.test(e.message),
  )
})

test('--relay offers pages a relay (a WebSocket multiaddr, for the app the farm serves); --devtools is off unless asked', () => {
  const relay = '/ip4/127.0.0.1/tcp/4011/ws/p2p/12D3KooWQYhTNQdmr3ArTeUHRYzFg94BKyTkoWBDWez9kSCVe2Xo'
  const o = parseFarmArgs(['--workers', '1', '--relay', relay, '--devtools'])
  assert.deepEqual(o.relays, [relay])
  assert.equal(o.devtools, true)
  const d = parseFarmArgs(['--workers', '1'])
  assert.equal(d.relays, undefined)
  assert.equal(d.devtools, false)
  assert.throws(() => parseFarmArgs(['--workers', '1', '--relay', '/ip4/127.0.0.1/tcp/4011']), UsageError)
  assert.throws(() => parseFarmArgs(['--workers', '1', '--relay', relay, '--app', 'http://127.0.0.1:5173']), UsageError)
})
