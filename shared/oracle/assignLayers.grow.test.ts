import assert from 'node:assert/strict'
import { test } from 'node:test'
import fc from 'fast-check'
import { planRoute, type PeerShard } from '../mesh/planRoute.ts'
import { assignLayers, type AssignLayersInput, type AssignLayersResult, type AssignmentNode, type LayerRange } from './assignLayers.ts'

// Sizes in units of 1/100 layer, as in assignLayers.test.ts: memory 1050 holds 10 layers, also with embed or head (50).
const LAYER = 100
const RUNS = Number(process.env.FC_RUNS) || 500
const node = (id: string, memoryBytes: number, score = 1, joinedAt = 0, mustServe = false): AssignmentNode => ({ id, memoryBytes, score, joinedAt, mustServe })
const input = (m: { numLayers?: number; embedBytes?: number; headBytes?: number; replicas?: number }, nodes: AssignmentNode[], current: ReadonlyMap<string, LayerRange> = new Map()): AssignLayersInput => ({
  numLayers: m.numLayers ?? 32,
  layerBytes: LAYER,
  embedBytes: m.embedBytes ?? 50,
  headBytes: m.headBytes ?? 50,
  nodes,
  current,
  replicas: m.replicas ?? 2,
  grow: true,
})
const asObject = (r: AssignLayersResult) => Object.fromEntries([...r.ranges].map(([id, x]) => [id, [x.start, x.end]]))
const peersOf = (ranges: ReadonlyMap<string, LayerRange>): PeerShard[] => [...ranges].map(([peerId, r]) => ({ peerId, multiaddrs: [], ...r }))
/** Bytes a range needs, by plain arithmetic. */
const need = (inp: AssignLayersInput, x: LayerRange) => (x.end - x.start) * LAYER + (x.start === 0 ? inp.embedBytes : 0) + (x.end === inp.numLayers ? inp.headBytes : 0)

/** Cut points reached from layer 0 and those reaching L, by brute force over the ranges. */
function cuts(ranges: LayerRange[], L: number): { from: Set<number>; to: Set<number> } {
  const from = new Set([0])
  const to = new Set([L])
  for (let changed = true; changed; ) {
    changed = false
    for (const r of ranges) {
      if (from.has(r.start) && !from.has(r.end)) from.add(r.end), (changed = true)
      if (to.has(r.end) && !to.has(r.start)) to.add(r.start), (changed = true)
    }
  }
  return { from, to }
}

function check(inp: AssignLayersInput, r: AssignLayersResult): void {
  const L = inp.numLayers
  const byId = new Map(inp.nodes.map((n) => [n.id, n]))
  for (const [id, x] of r.ranges) {
    assert.ok(0 <= x.start && x.start < x.end && x.end <= L, `bad range ${id}`)
    assert.ok(need(inp, x) <= byId.get(id)!.memoryBytes, `${id} overcommitted`)
  }
  const seen = new Set<string>()
  for (const chain of r.chains!) {
    let at = 0
    for (const id of chain) {
      assert.ok(!seen.has(id), `${id} in two chains`)
      seen.add(id)
      assert.equal(r.ranges.get(id)!.start, at)
      at = r.ranges.get(id)!.end
    }
    assert.equal(at, L)
  }
  const min = Math.min(...r.copies)
  const peers = peersOf(r.ranges)
  if (min >= 1) assert.doesNotThrow(() => planRoute(peers, L))
  if (r.chains!.length >= 2) for (const id of r.ranges.keys()) assert.doesNotThrow(() => planRoute(peers, L, new Set([id])), `no route without ${id}`)
  // Nobody idles who could serve: an idle node fits no stretch between cut points a route uses.
  if (r.chains!.length >= 1) {
    const { from, to } = cuts([...r.ranges.values()], L)
    for (const n of inp.nodes) {
      if (r.ranges.has(n.id)) continue
      for (const a of from)
        for (const b of to) if (b > a) assert.ok(need(inp, { start: a, end: b }) > n.memoryBytes, `${n.id} idles but fits ${a}-${b}`)
      // A Plumise agent idles only when not even one layer ending where a route goes on fits it.
      if (n.mustServe) for (const b of to) if (b > 0) assert.ok(need(inp, { start: b - 1, end: b }) > n.memoryBytes, `${n.id} must serve, fits ${b - 1}-${b}`)
    }
  }
  // A Plumise agent's range ends where a route goes on, once the wanted pipelines exist (short of
  // them it may sit in the partial chain the next joiner completes).
  if (r.chains!.length >= (inp.replicas ?? 2)) {
    const { to } = cuts([...r.ranges.values()], L)
    for (const n of inp.nodes) {
      if (!n.mustServe || !r.ranges.has(n.id) || to.has(r.ranges.get(n.id)!.end)) continue
      // Only when no layer ending where a route goes on fits it (better some range than none).
      for (const b of to) if (b > 0) assert.ok(need(inp, { start: b - 1, end: b }) > n.memoryBytes, `${n.id} ends at ${r.ranges.get(n.id)!.end}, where no route goes on, but fits ${b - 1}-${b}`)
    }
  }
}

const nodeSpec = fc.record({
  memoryBytes: fc.oneof(fc.integer({ min: 0, max: 600 }), fc.integer({ min: 0, max: 3000 }), fc.integer({ min: 1000, max: 6000 })),
  score: fc.oneof(fc.constant(0), fc.integer({ min: 1, max: 100 })),
  plumise: fc.boolean(),
})
type Event = { kind: 'join'; spec: { memoryBytes: number; score: number; plumise: boolean } } | { kind: 'leave'; pick: number }
const event: fc.Arbitrary<Event> = fc.oneof(
  { weight: 3, arbitrary: nodeSpec.map((spec) => ({ kind: 'join' as const, spec })) },
  { weight: 2, arbitrary: fc.nat().map((pick) => ({ kind: 'leave' as const, pick })) },
)
const model = fc.record({
  numLayers: fc.integer({ min: 1, max: 24 }),
  embedBytes: fc.integer({ min: 0, max: 250 }),
  headBytes: fc.integer({ min: 0, max: 250 }),
  replicas: fc.constantFrom(1, 2, 3),
})

test('grow: join/leave sequences keep the guarantees, nobody idles who could serve, Plumise agents end where a route goes on, a fixed point', () => {
  fc.assert(
    fc.property(model, fc.array(event, { minLength: 1, maxLength: 40 }), (m, events) => {
      let live: AssignmentNode[] = []
      let current = new Map<string, LayerRange>()
      let prevChains = 0
      events.forEach((ev, t) => {
        let departed: LayerRange | undefined
        if (ev.kind === 'join') live = [...live, node(`n${t}`, ev.spec.memoryBytes, ev.spec.score, t, ev.spec.plumise)]
        else {
          if (live.length === 0) return
          const gone = live[ev.pick % live.length]!
          departed = current.get(gone.id)
          live = live.filter((n) => n !== gone)
        }
        const inp = input(m, live, current)
        const r = assignLayers(inp)
        check(inp, r)
        // Never fewer pipelines than before, except the one a departure broke.
        assert.ok(r.chains!.length >= prevChains - (ev.kind === 'leave' ? 1 : 0), `chains ${prevChains} -> ${r.chains!.length}`)
        // A join into a replicated network moves only the newcomer, unless others grow to make one more
        // pipeline (Plumise agents aside: one may move to where a route now goes on past its end).
        if (ev.kind === 'join' && prevChains >= m.replicas && r.chains!.length === prevChains) for (const [id, x] of r.ranges) if (id !== `n${t}` && current.has(id) && !live.find((n) => n.id === id)!.mustServe) assert.deepEqual(x, current.get(id), `join moved ${id}`)
        // A leave moves at most the layers it held, unless the moves made more pipelines than before,
        // or a Plumise agent had to move (the route past its end went with the leaver) and others
        // made room for it.
        const plumiseMoved = live.some((n) => n.mustServe && current.has(n.id) && JSON.stringify(current.get(n.id)) !== JSON.stringify(r.ranges.get(n.id)))
        if (ev.kind === 'leave' && prevChains >= m.replicas && !r.replanned && r.chains!.length <= prevChains && !plumiseMoved)
          assert.ok(r.moved <= (departed ? departed.end - departed.start : 0), `leave moved ${r.moved}, departed held ${departed?.start}-${departed?.end}`)
        const again = assignLayers(input(m, live, r.ranges))
        assert.equal(again.moved, 0)
        assert.deepEqual(asObject(again), asObject(r))
        current = r.ranges
        prevChains = r.chains!.length
      })
    }),
    { numRuns: RUNS },
  )
})

test('grow: eight equal nodes and one wanted copy make two pipelines, not one and four idle', () => {
  const eight = [1, 2, 3, 4, 5, 6, 7, 8].map((j) => node(`n${j}`, 1060, 5, j))
  const r = assignLayers(input({ replicas: 1 }, eight))
  assert.deepEqual(r.chains, [['n1', 'n2', 'n3', 'n4'], ['n5', 'n6', 'n7', 'n8']])
  assert.equal(r.ranges.size, 8)
  // Without grow the same input leaves four idle (the old behaviour).
  assert.equal(assignLayers({ ...input({ replicas: 1 }, eight), grow: false }).ranges.size, 4)
})

test('grow: a join into a fully replicated network forms another pipeline and moves nobody else', () => {
  const r1 = assignLayers(input({}, [node('a', 4000, 1, 1), node('b', 4000, 1, 2)]))
  assert.equal(r1.chains!.length, 2)
  const r2 = assignLayers(input({}, [node('a', 4000, 1, 1), node('b', 4000, 1, 2), node('fast', 9000, 100, 3)], r1.ranges))
  assert.equal(r2.chains!.length, 3)
  assert.equal(r2.moved, 32)
  assert.deepEqual(r2.ranges.get('fast'), { start: 0, end: 32 })
})

test('grow: a node too small for a pipeline copies the weaker stretch between cut points', () => {
  // Pipelines fast-a|slow-b (cut at 16) and c (whole). s holds 16 layers with the head: the slower half.
  const nodes = [node('a', 1650, 50, 1), node('b', 1650, 5, 2), node('c', 3300, 10, 3), node('s', 1650, 10, 4)]
  const current = new Map([
    ['a', { start: 0, end: 16 }],
    ['b', { start: 16, end: 32 }],
    ['c', { start: 0, end: 32 }],
  ])
  const r = assignLayers(input({}, nodes, current))
  assert.equal(r.moved, 16)
  assert.deepEqual(r.ranges.get('s'), { start: 16, end: 32 })
  // The route planner can take it: without b, a|s carries the first pipeline.
  assert.deepEqual(planRoute(peersOf(r.ranges), 32, new Set(['b', 'c'])).map((p) => p.peerId), ['a', 's'])
})

test('grow: a Plumise agent gets a non-empty range that ends where a route goes on, even where no stretch between cut points fits it', () => {
  const r1 = assignLayers(input({}, [node('a', 4000, 1, 1), node('b', 4000, 1, 2)]))
  // 5 layers (with the head): no whole stretch between the cut points 0 and 32 fits it.
  const nodes = [node('a', 4000, 1, 1), node('b', 4000, 1, 2), node('p', 560, 1, 3, true), node('q', 560, 1, 4)]
  const r = assignLayers(input({}, nodes, r1.ranges))
  assert.deepEqual(r.ranges.get('p'), { start: 27, end: 32 })
  assert.ok(!r.ranges.has('q'), 'an agent no route could use stays idle')
  assert.equal(r.moved, 5)
})

test('grow at 1000 agents: every agent that holds the model serves, a decision with nothing changed takes milliseconds', () => {
  let seed = 3
  const rand = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31)
  // 7B-class: 32 layers of 200 MB, 250 MB embeddings and head; agents 2-80 GB.
  const sizes = { numLayers: 32, layerBytes: 200e6, embedBytes: 250e6, headBytes: 250e6 }
  const nodes = Array.from({ length: 1000 }, (_, i) => ({ id: `a${i}`, memoryBytes: Math.floor(2e9 + rand() * 78e9), score: 1 + Math.floor(rand() * 100), joinedAt: i }))
  const r = assignLayers({ ...sizes, nodes, current: new Map(), replicas: 2, grow: true })
  assert.ok(r.ranges.size >= 0.99 * nodes.length, `${r.ranges.size} of ${nodes.length} serve`)
  assert.ok(r.chains!.length > 900)
  const again = assignLayers({ ...sizes, nodes, current: r.ranges, replicas: 2, grow: true })
  assert.equal(again.moved, 0)
})
