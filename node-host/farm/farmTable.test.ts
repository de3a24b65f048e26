import assert from 'node:assert/strict'
import { test } from 'node:test'
import { parseEther } from 'viem'
import { parsePromText, promValue } from '../../testing/promText.ts'
import { createFarmMetrics } from './farmMetrics.ts'
import { startFarmStatusServer, summarize, type FarmStatus } from './farmStatusServer.ts'
import { renderFarmTable } from './farmTable.ts'

const status = (): FarmStatus =>
  summarize(
    [
      {
        worker: 1,
        state: 'running',
        phase: 'serving',
        peerId: '12D3KooWabcdefgh12345678',
        range: { start: 0, end: 4 },
        tokensForwarded: 120,
        tokensPerSecond: 3.5,
        restarts: 0,
        failuresInARow: 0,
        crashLoop: false,
        pageRssBytes: 300 * 2 ** 20,
        browserRssBytes: 200 * 2 ** 20,
        earningsUsd: 0.0125,
        served: { tokensPerSecond: 2.25, tokens: 110, wallet: '0x00000000000000000000000000000000000000aa' },
        pendingWei: parseEther('0.5').toString(),
      },
      { worker: 2, state: 'backoff', tokensForwarded: 0, tokensPerSecond: 0, restarts: 5, failuresInARow: 5, crashLoop: true, lastFailure: 'the renderer crashed', nextLaunchAt: 10_000 },
    ],
    { address: '0x00000000000000000000000000000000000000ff', pendingWei: parseEther('0.5').toString(), claimedWei: parseEther('1.25').toString() },
  )

test('the table shows each worker\'s state, range, tokens, rate, served rate as the Oracle counts it, earnings, restarts and memory, a crash loop, and the farm wallet', () => {
  const text = renderFarmTable(status(), 2000)
  const lines = text.split('\n')
  assert.match(lines[1]!, /^1\s+serving\s+…12345678\s+\[0, 4\)\s+120\s+3\.5\s+2\.3\s+0\.0125\s+0\s+300\s+200$/)
  assert.match(lines[2]!, /^2\s+backoff 8s CRASH-LOOP\s+-\s+-\s+0\s+0\.0\s+-\s+0\.0000/)
  assert.match(text, /total: 120 tokens forwarded, 3\.5 tokens\/s, served 2\.3 tokens\/s \(Oracle\), earned \$0\.0125, 5 restarts/)
  assert.match(text, /farm wallet 0x0+ff: 0\.5 pending, 1\.25 claimed/)
  assert.match(text, /worker 2: last failure: the renderer crashed/)
})

test('GET /metrics of the status server: per worker served tokens/s, restarts, memory, earnings, pending reward; the farm\'s total and claims', async () => {
  const metrics = createFarmMetrics(status)
  const server = await startFarmStatusServer({ port: 0, status, metrics: () => metrics.render() })
  try {
    const res = await fetch(server.metricsUrl)
    assert.equal(res.status, 200)
    assert.match(res.headers.get('content-type') ?? '', /^text\/plain/)
    const m = parsePromText(await res.text())
    assert.equal(promValue(m, 'shardmesh_farm_worker_served_tokens_per_second', { worker: '1' }), 2.25)
    assert.equal(promValue(m, 'shardmesh_farm_worker_served_tokens_per_second', { worker: '2' }), undefined, 'not counted by the Oracle: left out, not 0')
    assert.equal(promValue(m, 'shardmesh_farm_worker_tokens_per_second', { worker: '1' }), 3.5)
    assert.equal(promValue(m, 'shardmesh_farm_worker_up', { worker: '1', state: 'serving' }), 1)
    assert.equal(promValue(m, 'shardmesh_farm_worker_up', { worker: '2', state: 'backoff' }), 0)
    assert.equal(promValue(m, 'shardmesh_farm_worker_restarts_total', { worker: '2' }), 5)
    assert.equal(promValue(m, 'shardmesh_farm_worker_page_rss_bytes', { worker: '1' }), 300 * 2 ** 20)
    assert.equal(promValue(m, 'shardmesh_farm_worker_earnings_usd', { worker: '1' }), 0.0125)
    assert.equal(promValue(m, 'shardmesh_farm_worker_pending_reward_wei', { worker: '1' }), 5e17)
    assert.equal(promValue(m, 'shardmesh_farm_served_tokens_per_second'), 2.25)
    assert.equal(promValue(m, 'shardmesh_farm_claimed_wei_total'), 1.25e18)
    assert.equal(m.get('shardmesh_farm_worker_restarts_total')?.type, 'counter')
    const s = (await (await fetch(server.url)).json()) as FarmStatus
    assert.equal(s.servedTokensPerSecond, 2.25)
    assert.equal(s.workers[0]!.served?.tokens, 110)
  } finally {
    await server.close()
  }
})
