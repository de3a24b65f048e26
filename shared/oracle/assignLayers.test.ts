import assert from 'node:assert/strict'
import { test } from 'node:test'
import fc from 'fast-check'
import { planRoute, type PeerShard } from '../mesh/planRoute.ts'
import { AssignLayersError, assignLayers, coverageOf, type AssignLayersInput, type AssignLayersResult, type AssignmentNode, type LayerRange } from './assignLayers.ts'

// Sizes in units of 1/100 layer: a node of memory 1050 holds 10 middle layers, 10 with layer 0 (embed 50).
const LAYER = 100
/** More runs for a deeper search: FC_RUNS=20000. */
const RUNS = Number(process.env.FC_RUNS) || 1000
type Model = { numLayers: number; embedBytes: number; headBytes: number; replicas: number }
const node = (id: string, memoryBytes: number, score = 1, joinedAt = 0): AssignmentNode => ({ id, memoryBytes, score, joinedAt })
const input = (m: Partial<Model>, nodes: AssignmentNode[], current: ReadonlyMap<string, LayerRange> = new Map()): AssignLayersInput => ({
  numLayers: m.numLayers ?? 32,
  layerBytes: LAYER,
  embedBytes: m.embedBytes ?? 50,
  headBytes: m.headBytes ?? 50,
  nodes,
  current,
  replicas: m.replicas ?? 2,
})
const asObject = (r: AssignLayersResult) => Object.fromEntries([...r.ranges].map(([id, x]) => [id, [x.start, x.end]]))
const peersOf = (ranges: ReadonlyMap<string, LayerRange>): PeerShard[] => [...ranges].map(([peerId, r]) => ({ peerId, multiaddrs: [], ...r }))

// --- Independent references (byte arithmetic, brute force), not the implementation's helpers ---

/** Most whole layers `mem` holds next to `extra` bytes. */
const fit = (mem: number, extra: number) => Math.max(0, Math.floor((mem - extra) / LAYER))

/** Whether any one pipeline of these nodes can hold [0, L): one node with both ends, or a first, a last and any middles. */
function coverable(nodes: AssignmentNode[], L: number, e: number, h: number): boolean {
  if (nodes.some((n) => fit(n.memoryBytes, e + h) >= L)) return true
  if (L < 2) return false
  const mids = nodes.reduce((a, n) => a + fit(n.memoryBytes, 0), 0)
  for (const i of nodes)
    for (const j of nodes) {
      if (i === j || fit(i.memoryBytes, e) < 1 || fit(j.memoryBytes, h) < 1) continue
      if (mids - fit(i.memoryBytes, 0) - fit(j.memoryBytes, 0) + fit(i.memoryBytes, e) + fit(j.memoryBytes, h) >= L) return true
    }
  return false
}

/**
 * A simple capacity bound under which k node-disjoint pipelines certainly exist: counting only nodes
 * that could hold any position, Σ middle capacity ≥ k·(L + ⌈e⌉ + ⌈h⌉) + (k−1)·(largest node), since
 * filling one pipeline at a time wastes less than one node's capacity each (the exact question is a
 * partition problem).
 */
function admitsChains(k: number, nodes: AssignmentNode[], L: number, e: number, h: number): boolean {
  const capable = nodes.filter((n) => fit(n.memoryBytes, e + h) >= 1)
  const sum = capable.reduce((a, n) => a + fit(n.memoryBytes, 0), 0)
  const largest = Math.max(0, ...nodes.map((n) => fit(n.memoryBytes, 0)))
  return sum >= k * (L + Math.ceil(e / LAYER) + Math.ceil(h / LAYER)) + (k - 1) * largest
}

/** Every invariant of one decision, checked against the references and the real route planner. */
function check(inp: AssignLayersInput, r: AssignLayersResult): void {
  const L = inp.numLayers
  const byId = new Map(inp.nodes.map((n) => [n.id, n]))
  for (const [id, x] of r.ranges) {
    const n = byId.get(id)
    assert.ok(n, `range for unknown node ${id}`)
    assert.ok(Number.isInteger(x.start) && Number.isInteger(x.end) && 0 <= x.start && x.start < x.end && x.end <= L, `bad range ${id} ${x.start}-${x.end}`)
    const bytes = (x.end - x.start) * LAYER + (x.start === 0 ? inp.embedBytes : 0) + (x.end === L ? inp.headBytes : 0)
    assert.ok(bytes <= n.memoryBytes, `${id} overcommitted: ${bytes} > ${n.memoryBytes}`)
  }
  assert.deepEqual(r.copies, coverageOf(r.ranges, L))
  let moved = 0
  for (const [id, x] of r.ranges) {
    const was = inp.current.get(id)
    for (let l = x.start; l < x.end; l++) if (!was || l < was.start || l >= was.end) moved++
  }
  assert.equal(r.moved, moved)
  // Chains: node-disjoint, each tiles [0, L) with the returned ranges.
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
  const replicas = inp.replicas ?? 2
  const min = Math.min(...r.copies)
  if (coverable(inp.nodes, L, inp.embedBytes, inp.headBytes)) {
    assert.ok(min >= 1, `coverable but a layer is uncovered: ${r.copies.join(',')}`)
    assert.ok(r.chains!.length >= 1)
  }
  for (let k = 2; k <= replicas; k++)
    if (admitsChains(k, inp.nodes, L, inp.embedBytes, inp.headBytes)) {
      assert.ok(min >= k, `capacity admits ${k} copies, got min ${min}`)
      assert.ok(r.chains!.length >= k)
    }
  const peers = peersOf(r.ranges)
  if (min >= 1) assert.doesNotThrow(() => planRoute(peers, L))
  if (min >= 2) for (const id of r.ranges.keys()) assert.doesNotThrow(() => planRoute(peers, L, new Set([id])), `no route without ${id}`)
}

const nodeSpec = fc.record({
  memoryBytes: fc.oneof(fc.integer({ min: 0, max: 600 }), fc.integer({ min: 0, max: 3000 }), fc.integer({ min: 1000, max: 6000 })),
  score: fc.oneof(fc.constant(0), fc.integer({ min: 1, max: 100 })),
})
type Spec = { memoryBytes: number; score: number }
type Event = { kind: 'join'; spec: Spec } | { kind: 'leave' | 'fail'; pick: number }
const event: fc.Arbitrary<Event> = fc.oneof(
  { weight: 3, arbitrary: nodeSpec.map((spec) => ({ kind: 'join' as const, spec })) },
  { weight: 1, arbitrary: fc.nat().map((pick) => ({ kind: 'leave' as const, pick })) },
  { weight: 1, arbitrary: fc.nat().map((pick) => ({ kind: 'fail' as const, pick })) },
)
const model = fc.record({
  numLayers: fc.integer({ min: 1, max: 24 }),
  embedBytes: fc.integer({ min: 0, max: 250 }),
  headBytes: fc.integer({ min: 0, max: 250 }),
  replicas: fc.constantFrom(1, 2, 2, 3),
})

test('join/leave/fail sequences: no overcommit, coverage and copies whenever capacity allows, routes that survive one loss, bounded moves', () => {
  fc.assert(
    fc.property(model, fc.array(event, { minLength: 1, maxLength: 40 }), (m, events) => {
      let live: AssignmentNode[] = []
      let prev: AssignLayersResult | undefined
      let current = new Map<string, LayerRange>()
      events.forEach((ev, t) => {
        let departed: LayerRange | undefined
        if (ev.kind === 'join') live = [...live, node(`n${t}`, ev.spec.memoryBytes, ev.spec.score, t)]
        else {
          if (live.length === 0) return
          const gone = live[ev.pick % live.length]!
          departed = current.get(gone.id)
          live = live.filter((n) => n !== gone)
          // A failure is a leave the Oracle noticed late: the same input by the time it decides.
        }
        const inp = input(m, live, current)
        const r = assignLayers(inp)
        check(inp, r)
        const fully = prev !== undefined && prev.chains!.length >= m.replicas
        if (ev.kind === 'join' && fully) {
          // Nothing to gain: the newcomer stays spare and nobody moves.
          assert.equal(r.moved, 0)
          assert.deepEqual(asObject(r), asObject(prev!))
        }
        if (ev.kind !== 'join' && fully && !r.replanned) assert.ok(r.moved <= (departed ? departed.end - departed.start : 0), `leave moved ${r.moved}, departed held ${departed?.start}-${departed?.end}`)
        if (r.replanned) assert.ok(r.chains!.length > (prev?.chains!.length ?? 0) - (ev.kind === 'join' ? 0 : 1))
        // A decision is a fixed point: fed back, nothing moves.
        const again = assignLayers(input(m, live, r.ranges))
        assert.equal(again.moved, 0)
        assert.deepEqual(asObject(again), asObject(r))
        prev = r
        current = r.ranges
      })
    }),
    { numRuns: RUNS },
  )
})

test('deterministic: the same input, in any node order, gives the same answer', () => {
  fc.assert(
    fc.property(model, fc.array(nodeSpec, { maxLength: 25 }), fc.array(fc.tuple(fc.nat(30), fc.nat(30)), { maxLength: 25 }), fc.nat(), (m, specs, held, seed) => {
      const nodes = specs.map((s, i) => node(`n${i}`, s.memoryBytes, s.score, i % 7))
      const current = new Map(held.slice(0, nodes.length).map(([a, b], i) => [`n${i}`, { start: Math.min(a, b), end: Math.max(a, b) }]))
      const shuffled = [...nodes].sort((a, b) => ((a.id.length * 31 + seed) % 5) - ((b.id.length * 17 + seed) % 5) || (a.id < b.id ? 1 : -1))
      const one = assignLayers(input(m, nodes, current))
      check(input(m, nodes, current), one)
      assert.deepEqual(assignLayers(input(m, nodes, current)), one)
      const other = assignLayers(input(m, shuffled, current))
      assert.deepEqual(asObject(other), asObject(one))
      assert.deepEqual(other.chains, one.chains)
    }),
    { numRuns: RUNS },
  )
})

test('upstream-style equal nodes get contiguous near-equal ranges in join order', () => {
  // Each holds 10 layers (also with embeddings or head); 32 layers need four of them.
  const four = [3, 1, 4, 2].map((j) => node(`n${j}`, 1060, 5, j))
  assert.deepEqual(asObject(assignLayers(input({ replicas: 1 }, four))), { n1: [0, 8], n2: [8, 16], n3: [16, 24], n4: [24, 32] })
  // Upstream's own example shape: 3 equal nodes over 22 layers → 7/7/8 (here 8/7/7), in join order.
  const three = [1, 2, 3].map((j) => node(`n${j}`, 2000, 0, j))
  const r = assignLayers(input({ numLayers: 22, replicas: 1 }, three.map((n) => ({ ...n, memoryBytes: 1000 }))))
  assert.deepEqual(asObject(r), { n1: [0, 8], n2: [8, 15], n3: [15, 22] })
  // Two copies: the first four joiners make one pipeline, the next four another.
  const eight = [1, 2, 3, 4, 5, 6, 7, 8].map((j) => node(`n${j}`, 1060, 5, j))
  const two = assignLayers(input({}, eight))
  assert.deepEqual(two.chains, [['n1', 'n2', 'n3', 'n4'], ['n5', 'n6', 'n7', 'n8']])
  assert.deepEqual(two.copies, new Array(32).fill(2))
})

test('faster nodes get more layers, capped by memory; memory decides when no score is known', () => {
  const fast = node('fast', 3000, 30, 1)
  const slow = node('slow', 3000, 10, 2)
  assert.deepEqual(asObject(assignLayers(input({ replicas: 1 }, [fast, slow]))), { fast: [0, 24], slow: [24, 32] })
  // The fast node only holds 12 layers (with the embeddings): it is capped, the slow one takes the rest.
  assert.deepEqual(asObject(assignLayers(input({ replicas: 1 }, [{ ...fast, memoryBytes: 1250 }, slow]))), { fast: [0, 12], slow: [12, 32] })
  // No scores: shares follow memory (30 : 10 layers of room).
  const big = node('big', 3000, 0, 1)
  const small = node('small', 1000, 0, 2)
  assert.deepEqual(asObject(assignLayers(input({ replicas: 1 }, [big, small]))), { big: [0, 24], small: [24, 32] })
  // A node that holds the whole model alone serves it alone (no hops), the fastest such first.
  const whole = assignLayers(input({ replicas: 1 }, [node('a', 4000, 5, 1), node('b', 4000, 50, 2), node('c', 4000, 20, 3)]))
  assert.deepEqual(asObject(whole), { b: [0, 32] })
})

test('too small for a layer, or for the embeddings: never given what does not fit', () => {
  const tiny = node('tiny', 99, 100, 0)
  // 'mid' holds 3 layers but not the 300-byte embeddings or head: the fastest, yet only a middle piece.
  const r = assignLayers(input({ embedBytes: 300, headBytes: 300, replicas: 1, numLayers: 16 }, [tiny, node('mid', 320, 100, 1), node('a', 1000, 1, 2), node('b', 1000, 1, 3)]))
  assert.ok(!r.ranges.has('tiny'))
  assert.equal(Math.min(...r.copies), 1)
  assert.notEqual(r.ranges.get('mid')!.start, 0)
  assert.notEqual(r.ranges.get('mid')!.end, 16)
})

test('short of capacity: layers are covered from layer 0 as far as memory goes, and the next joiner continues the chain', () => {
  const a = node('a', 1050, 1, 1)
  const r1 = assignLayers(input({}, [a]))
  assert.deepEqual(asObject(r1), { a: [0, 10] })
  const b = node('b', 1050, 1, 2)
  const r2 = assignLayers(input({}, [a, b], r1.ranges))
  assert.deepEqual(asObject(r2), { a: [0, 10], b: [10, 20] })
  assert.equal(r2.moved, 10)
  const r3 = assignLayers(input({}, [a, b, node('c', 1550, 1, 3)], r2.ranges))
  assert.deepEqual(asObject(r3), { a: [0, 10], b: [10, 20], c: [20, 32] })
  assert.deepEqual(r3.chains, [['a', 'b', 'c']])
})

test('a departure is repaired by the neighbours growing into the hole, else by one spare', () => {
  // Two pipelines a|b|c and d|e; b leaves; a and c have room and take b's 10 layers between them.
  const nodes = [node('a', 2050, 1, 1), node('b', 1050, 1, 2), node('c', 2050, 1, 3), node('d', 3250, 1, 4), node('e', 3250, 1, 5)]
  const current = new Map([
    ['a', { start: 0, end: 11 }], ['b', { start: 11, end: 21 }], ['c', { start: 21, end: 32 }],
    ['d', { start: 0, end: 16 }], ['e', { start: 16, end: 32 }],
  ])
  const r = assignLayers(input({}, nodes.filter((n) => n.id !== 'b'), current))
  assert.equal(r.moved, 10)
  assert.deepEqual(asObject(r), { a: [0, 16], c: [16, 32], d: [0, 16], e: [16, 32] })
  // With no room next to the hole, a spare takes exactly the hole; the fastest that fits.
  const tight = new Map([...current, ['a', { start: 0, end: 11 }]])
  const full = nodes.map((n) => (n.id === 'a' || n.id === 'c' ? { ...n, memoryBytes: 1150 } : n))
  const spares = [node('s1', 1000, 90, 6), node('s2', 1000, 10, 7), node('s3', 900, 99, 8)]
  const r2 = assignLayers(input({}, [...full.filter((n) => n.id !== 'b'), ...spares], tight))
  assert.equal(r2.moved, 10)
  assert.deepEqual(r2.ranges.get('s1'), { start: 11, end: 21 })
  assert.ok(!r2.ranges.has('s2') && !r2.ranges.has('s3'))
})

test('a join into a fully replicated network changes nothing', () => {
  const r1 = assignLayers(input({}, [node('a', 4000, 1, 1), node('b', 4000, 1, 2)]))
  assert.equal(r1.chains!.length, 2)
  const r2 = assignLayers(input({}, [node('a', 4000, 1, 1), node('b', 4000, 1, 2), node('fast', 9000, 100, 3)], r1.ranges))
  assert.equal(r2.moved, 0)
  assert.ok(!r2.ranges.has('fast'))
})

test('1000 nodes: every layer on two peers, the survivors still route after any one leaves', () => {
  let seed = 7
  const rand = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31)
  const nodes = Array.from({ length: 1000 }, (_, i) => node(`n${i}`, Math.floor(200 + rand() * 2000), Math.floor(rand() * 100), i))
  const inp = input({ numLayers: 80, replicas: 3 }, nodes)
  const r = assignLayers(inp)
  assert.ok(Math.min(...r.copies) >= 3)
  check(inp, r)
})

test('impossible input is a clear error', () => {
  assert.throws(() => assignLayers(input({ numLayers: 0 }, [])), (e: Error) => e instanceof AssignLayersError && /numLayers must be an integer >= 1, got 0/.test(e.message))
  assert.throws(() => assignLayers(input({}, [node('a', 1), node('a', 2)])), /node a is listed twice/)
  assert.throws(() => assignLayers({ ...input({}, []), layerBytes: 0 }), /layerBytes must be a positive number/)
  assert.throws(() => assignLayers(input({ replicas: 0 }, [])), /replicas must be an integer >= 1/)
  assert.throws(() => assignLayers(input({}, [node('a', Number.NaN)])), /node a: memoryBytes/)
})
