import assert from 'node:assert/strict'
import { test } from 'node:test'
import { summarize } from './farmStatusServer.ts'
import { renderFarmTable } from './farmTable.ts'

test('the table shows each worker\'s state, range, tokens, rate, restarts and memory, and a crash loop', () => {
  const text = renderFarmTable(
    summarize([
      { worker: 1, state: 'running', phase: 'serving', peerId: '12D3KooWabcdefgh12345678', range: { start: 0, end: 4 }, tokensForwarded: 120, tokensPerSecond: 3.5, restarts: 0, failuresInARow: 0, crashLoop: false, pageRssBytes: 300 * 2 ** 20, browserRssBytes: 200 * 2 ** 20 },
      { worker: 2, state: 'backoff', tokensForwarded: 0, tokensPerSecond: 0, restarts: 5, failuresInARow: 5, crashLoop: true, lastFailure: 'the renderer crashed', nextLaunchAt: 10_000 },
    ]),
    2000,
  )
  const lines = text.split('\n')
  assert.match(lines[1]!, /^1\s+serving\s+…12345678\s+\[0, 4\)\s+120\s+3\.5\s+0\s+300\s+200$/)
  assert.match(lines[2]!, /^2\s+backoff 8s CRASH-LOOP/)
  assert.match(text, /total: 120 tokens forwarded, 3\.5 tokens\/s, 5 restarts/)
  assert.match(text, /worker 2: last failure: the renderer crashed/)
})
