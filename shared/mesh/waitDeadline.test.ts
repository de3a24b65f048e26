import assert from 'node:assert/strict'
import { getEventListeners } from 'node:events'
import { test } from 'node:test'
import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'
import { createWaitDeadline, withTimeout } from './waitDeadline.ts'

setFlagsFromString('--expose-gc')
const gc = runInNewContext('gc') as () => void

class Timeout extends Error {}

test('a wait resolves on wake, rejects at the deadline, and with the signal\'s reason when it aborts', async () => {
  const woken = createWaitDeadline(1000, undefined, () => new Timeout())
  await woken.wait((wake) => setTimeout(wake, 5))
  woken.dispose()

  const late = createWaitDeadline(20, undefined, () => new Timeout())
  await assert.rejects(late.wait(() => undefined), Timeout)
  late.dispose()

  const c = new AbortController()
  const aborted = createWaitDeadline(1000, c.signal, () => new Timeout())
  const waiting = aborted.wait(() => undefined)
  c.abort(new RangeError('client left'))
  await assert.rejects(waiting, RangeError)
  await assert.rejects(aborted.wait(() => undefined), RangeError, 'a later wait on the same deadline fails at once')
  aborted.dispose()

  const gone = new AbortController()
  gone.abort(new RangeError('already gone'))
  await assert.rejects(createWaitDeadline(1000, gone.signal, () => new Timeout()).wait(() => undefined), RangeError)
})

test('a finished wait keeps nothing alive: a generation\'s per-step waits on its request signal are collectable at once, not after the timeout', async () => {
  // The request's signal as the HTTP API passes it on: a composite that lives as long as the request.
  const request = new AbortController()
  const signal = AbortSignal.any([request.signal, new AbortController().signal])
  const refs: WeakRef<object>[] = []
  const step = async () => {
    // What a step's wait reaches (the generation's inbox and streams in forwardOrigin).
    const state = { inbox: new Uint8Array(1024) }
    refs.push(new WeakRef(state))
    const deadline = createWaitDeadline(30_000, signal, () => new Timeout(`no token (${state.inbox.length})`))
    try {
      await deadline.wait((wake) => queueMicrotask(() => (state.inbox[0] = 1, wake())))
    } finally {
      deadline.dispose()
    }
  }
  for (let i = 0; i < 200; i++) await step()
  // Off the call stack before collecting (a finished frame may still be pointed at until then).
  await new Promise((r) => setTimeout(r, 10))
  assert.equal(getEventListeners(signal, 'abort').length, 0, 'no listener left on the request signal')
  for (let i = 0; i < 3; i++) {
    gc()
    await new Promise((r) => setImmediate(r))
  }
  const alive = refs.filter((r) => r.deref() !== undefined).length
  assert.equal(alive, 0, `${alive} of 200 finished steps still reachable`)
})

test('withTimeout: the signal aborts with a TimeoutError at the deadline, and never once the run has settled', async () => {
  const slow = withTimeout(30, (signal) => new Promise((_, reject) => signal.addEventListener('abort', () => reject(signal.reason), { once: true })))
  await assert.rejects(slow, (e: Error) => e.name === 'TimeoutError')

  const seen: AbortSignal[] = []
  assert.equal(await withTimeout(30, async (signal) => (seen.push(signal), 'frame')), 'frame')
  await assert.rejects(withTimeout(30, async (signal) => (seen.push(signal), Promise.reject(new RangeError('stream reset')))), RangeError)
  await new Promise((r) => setTimeout(r, 80))
  // AbortSignal.timeout(30) would have fired here, its timer and signal alive until then.
  assert.deepEqual(seen.map((s) => s.aborted), [false, false], 'the timers were cleared when the runs settled')
})
