import assert from 'node:assert/strict'
import { test } from 'node:test'
import { NoRouteError, planRoute, type PeerShard } from './planRoute.ts'

const peer = (peerId: string, start: number, end: number, latencyMs?: number): PeerShard => ({ peerId, multiaddrs: [], start, end, latencyMs })

test('the route covers [0, L) contiguously with the lowest latency', () => {
  const peers = [peer('a', 0, 3, 2), peer('b', 3, 6, 2), peer('c', 6, 8, 2), peer('slow', 3, 6, 50), peer('whole', 0, 8, 100)]
  assert.deepEqual(planRoute(peers, 8).map((p) => p.peerId), ['a', 'b', 'c'])
  assert.deepEqual(planRoute(peers, 8, new Set(['b'])).map((p) => p.peerId), ['a', 'slow', 'c'])
  assert.deepEqual(planRoute(peers, 8, new Set(['b', 'slow'])).map((p) => p.peerId), ['whole'])
})

test('a gap in coverage is a NoRouteError naming what is there', () => {
  assert.throws(() => planRoute([peer('a', 0, 3), peer('c', 4, 8)], 8), (e: Error) => e instanceof NoRouteError && /0-3, 4-8/.test(e.message))
})
