import assert from 'node:assert/strict'
import { test } from 'node:test'
import { servedSnapshotSchema } from '../../../shared/oracle/servedThroughput.ts'
import { createServedLedger, type ServedAgent } from './servedLedger.ts'

const page: ServedAgent = { agentId: 'agent-page', model: 'm', peerId: '12D3KooWpage', kind: 'page', connectedAt: 0 }
const host: ServedAgent = { agentId: 'agent-host', model: 'm', peerId: '12D3KooWhost', kind: 'host', connectedAt: 0 }

function ledgerAt(start = 0, maxTokensPerSecond = 100) {
  const clock = { t: start }
  const ledger = createServedLedger({ maxTokensPerSecond: () => maxTokensPerSecond, windowMs: 60_000, now: () => clock.t })
  return { ledger, clock }
}

test('rises of the cumulative counters are booked; rates are the window\'s accepted tokens per second; totals add up', () => {
  const { ledger, clock } = ledgerAt()
  clock.t = 10_000
  const first = ledger.report(page, { served: { tokens: 300, steps: 40, sessions: 2 }, throughput: 25 })
  assert.deepEqual({ tokens: first?.tokens, steps: first?.steps, sessions: first?.sessions, clamped: first?.clamped }, { tokens: 300, steps: 40, sessions: 2, clamped: false })
  clock.t = 20_000
  const second = ledger.report(page, { served: { tokens: 900, steps: 100, sessions: 3 }, throughput: 60 })
  assert.equal(second?.tokens, 600)
  assert.deepEqual(second?.totals, { tokens: 900, steps: 100, sessions: 3, seconds: 10 })
  ledger.report(host, { served: { tokens: 1200, steps: 100, sessions: 3 }, throughput: null })
  const s = servedSnapshotSchema.parse(ledger.snapshot())
  const p = s.nodes.find((n) => n.id === page.agentId)!
  assert.equal(p.tokensPerSecond, 15) // 900 tokens over the 60 s window
  assert.equal(p.reportedTokensPerSecond, 60)
  assert.equal(p.kind, 'page')
  assert.equal(s.nodes.find((n) => n.id === host.agentId)!.reportedTokensPerSecond, null)
  assert.equal(s.totalTokensPerSecond, 35)
  assert.equal(s.totalTokens, 2100)
  // out of the window: the rate falls to 0, the totals stay
  clock.t = 90_000
  const later = ledger.snapshot()
  assert.equal(later.totalTokensPerSecond, 0)
  assert.equal(later.totalTokens, 2100)
})

test('claims above the agent\'s capacity since its last report are clamped, as are steps above tokens and sessions above steps; its own rate is capped', () => {
  const { ledger, clock } = ledgerAt(0, 50)
  clock.t = 2000
  const b = ledger.report(page, { served: { tokens: 1_000_000, steps: 2_000_000, sessions: 9_000_000 }, throughput: 1e9 })!
  assert.equal(b.tokens, 100) // 2 s × 50 tokens/s
  assert.equal(b.steps, 100)
  assert.equal(b.sessions, 100)
  assert.equal(b.clamped, true)
  assert.equal(ledger.snapshot().nodes[0]!.reportedTokensPerSecond, 50)
  // the next report's rise is taken from the raw counters: the clamped excess is not paid later
  clock.t = 3000
  assert.equal(ledger.report(page, { served: { tokens: 1_000_010, steps: 2_000_001, sessions: 9_000_000 }, throughput: 10 })!.tokens, 10)
  assert.equal(ledger.snapshot().nodes[0]!.tokens, 110)
})

test('counters that go backwards are a restart: they count from zero again, bounded by the time since it reconnected; negatives never book', () => {
  const { ledger, clock } = ledgerAt()
  clock.t = 10_000
  ledger.report(page, { served: { tokens: 500, steps: 50, sessions: 5 }, throughput: 10 })
  clock.t = 20_000
  const after = ledger.report({ ...page, connectedAt: 19_000 }, { served: { tokens: 80, steps: 8, sessions: 1 }, throughput: 10 })!
  assert.deepEqual({ tokens: after.tokens, steps: after.steps, sessions: after.sessions }, { tokens: 80, steps: 8, sessions: 1 })
  clock.t = 20_500
  const burst = ledger.report({ ...page, connectedAt: 20_400 }, { served: { tokens: 5000, steps: 5, sessions: 0 }, throughput: 10 })!
  assert.equal(burst.tokens, 10) // steps went back: a restart, bounded by 0.1 s since it reconnected × 100 tokens/s
  assert.equal(ledger.snapshot().nodes[0]!.tokens, 590)
})

test('a report without counters books nothing; forget drops the agent; a wallet is shown once set; snapshots are emitted at most once per interval', async () => {
  const ledger = createServedLedger({ maxTokensPerSecond: () => 100, emitEveryMs: 20 })
  const seen: number[] = []
  ledger.events.on('served', (s) => seen.push(s.nodes.length))
  assert.equal(ledger.report({ ...page, connectedAt: Date.now() - 1000 }, { served: undefined, throughput: 5 }), undefined)
  ledger.report({ ...host, connectedAt: Date.now() - 1000 }, { served: { tokens: 1, steps: 1, sessions: 1 }, throughput: null })
  ledger.setWallet(page.agentId, '0xabc')
  await new Promise((r) => setTimeout(r, 60))
  assert.deepEqual(seen, [2])
  assert.equal(ledger.snapshot().nodes.find((n) => n.id === page.agentId)!.wallet, '0xabc')
  ledger.forget(page.agentId)
  await new Promise((r) => setTimeout(r, 60))
  assert.deepEqual(seen, [2, 1])
  ledger.close()
})
