import assert from 'node:assert/strict'
import { test } from 'node:test'
import { setTimeout as sleep } from 'node:timers/promises'
import { createCoalescedReport } from './coalescedReport.ts'

// Real timers: a loaded machine may fire them late, never early, so the "not yet" checks are exact
// and the "by then" checks leave room.

test('a burst of requests sends one report after the settle time', async () => {
  let sent = 0
  const r = createCoalescedReport({ report: () => sent++, minGapMs: 1000, settleMs: 50 })
  for (let i = 0; i < 100; i++) r.request()
  assert.equal(sent, 0, 'not at once: later requests may join')
  await sleep(400)
  assert.equal(sent, 1)
  r.stop()
})

test('a request soon after a report waits until the gap has passed; a periodic report covers a pending one', async () => {
  let sent = 0
  const r = createCoalescedReport({ report: () => sent++, minGapMs: 1000, settleMs: 20 })
  r.request()
  await sleep(200)
  assert.equal(sent, 1)
  const t0 = performance.now()
  r.request()
  r.request()
  await sleep(600)
  assert.equal(sent, 1, 'the second waits out the gap from the first')
  while (sent < 2 && performance.now() - t0 < 5000) await sleep(10)
  assert.equal(sent, 2)
  assert.ok(performance.now() - t0 >= 750, 'not before the gap (1 s after the first, ~0.2 s before this request)')

  // The periodic report went out: the pending request is covered, and the gap counts from it.
  await sleep(1100)
  r.request()
  r.reported()
  await sleep(1300)
  assert.equal(sent, 2, 'no extra report after a periodic one covered it')
  r.request()
  r.stop()
  await sleep(100)
  assert.equal(sent, 2, 'nothing after stop')
})
