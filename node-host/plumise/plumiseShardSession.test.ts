import assert from 'node:assert/strict'
import { after, before, describe, test } from 'node:test'
import { loadShards } from '../../shared/engine/loadShards.ts'
import { ShardInputError, UnknownSessionError, type ShardSession } from '../../shared/engine/shardSession.ts'
import { nodeRuntime } from '../engine/nodeRuntime.ts'
import { fileModelSource } from '../model/fileModelSource.ts'
import { loadFixture, type Fixture } from '../../testing/fixtures.ts'
import { createPlumiseServer, type PlumiseServer } from './plumiseServer.ts'
import { createPlumiseShardSession, PlumiseRelayError } from './plumiseShardSession.ts'
import { PLUMISE_DTYPES } from './plumiseTensor.ts'

const argmax = (row: Float32Array) => row.reduce((best, v, i) => (v > row[best]! ? i : best), 0)

/**
 * The relay of a mixed route: a mesh shard [3, 6) whose layers run on a Plumise gRPC node. The
 * mesh's own shards [0, 3) and [6, 8) keep KV caches and pass one position per step; the relay
 * turns that into upstream's full-sequence calls.
 */
describe('createPlumiseShardSession: a Plumise node over gRPC as a mesh shard', () => {
  let fixture: Fixture
  let shards: ShardSession[]
  let node: PlumiseServer
  let spare: PlumiseServer
  const relays: ShardSession[] = []

  before(async () => {
    fixture = await loadFixture('docs-llama-7m')
    const source = fileModelSource(fixture.dir)
    ;({ shards } = await loadShards({ source, runtime: nodeRuntime(), device: 'cpu', ranges: [{ start: 0, end: 3 }, { start: 3, end: 6 }, { start: 6, end: 8 }] }))
    node = await createPlumiseServer({ model: 'docs-llama-7m', address: '0xNODE', eosTokenIds: [0], shard: () => shards[1] })
    spare = await createPlumiseServer({ model: 'docs-llama-7m', address: '0xSPARE', eosTokenIds: [0], shard: () => undefined })
  })
  after(async () => {
    for (const r of relays) await r.dispose()
    await node?.close()
    await spare?.close()
    for (const s of shards ?? []) await s.dispose()
  })

  const relay = async (dtype: (typeof PLUMISE_DTYPES)[number]) => {
    const r = await createPlumiseShardSession({ endpoint: node.endpoint, spec: shards[1]!.spec, range: { start: 3, end: 6 }, model: 'docs-llama-7m', dtype })
    relays.push(r)
    return r
  }

  for (const dtype of PLUMISE_DTYPES) {
    test(`cached mesh shards + the relay (${dtype}) give the reference greedy tokens, the node computing each position once`, async () => {
      const r = await relay(dtype)
      const computedBefore = node.counters().tokens
      let positions = 0
      for (const [i, p] of fixture.prompts.entries()) {
        const key = `s${i}-${dtype}`
        const ids: number[] = []
        let input: number[] = p.input_ids
        // bfloat16 rounding of the hidden states (twice per step) may flip a near-tie late in a long
        // continuation (seen at token 38): compare the first 16 tokens there, all of them otherwise.
        const steps = dtype === 'bfloat16' ? Math.min(16, p.new_tokens) : p.new_tokens
        for (let step = 0; step < steps; step++) {
          const reset = step === 0
          const h0 = await shards[0]!.forward(key, { tokens: input }, { reset })
          const h1 = await r.forward(key, { hidden: h0.hidden! }, { reset })
          assert.equal(h1.seqLen, input.length)
          assert.equal(r.cachedLength(key), p.input_ids.length + step)
          const out = await shards[2]!.forward(key, { hidden: h1.hidden! }, { reset })
          const V = shards[2]!.spec.vocabSize
          const id = argmax(out.logits!.subarray(out.logits!.length - V))
          ids.push(id)
          positions += input.length
          input = [id]
        }
        for (const s of [shards[0]!, r, shards[2]!]) s.drop(key)
        assert.deepEqual(ids, p.greedy_new_ids.slice(0, steps), `${dtype}: ${p.prompt}`)
      }
      // The relay re-sends the whole sequence each step under one request id prefix: the node's cache computes only new positions.
      assert.equal(node.counters().tokens - computedBefore, positions)
      assert.equal(r.kvBytes(), 0)
    })
  }

  test('float32 hidden states through the relay equal the local shard\'s', async () => {
    const r = await relay('float32')
    const p = fixture.prompts[0]!
    const h0 = await shards[0]!.forward('cmp', { tokens: p.input_ids }, { reset: true })
    const local = await shards[1]!.forward('cmp', { hidden: h0.hidden!.slice() }, { reset: true })
    const remote = await r.forward('cmp', { hidden: h0.hidden!.slice() }, { reset: true })
    assert.equal(remote.hidden!.length, local.hidden!.length)
    const maxDiff = remote.hidden!.reduce((m, v, i) => Math.max(m, Math.abs(v - local.hidden![i]!)), 0)
    assert.ok(maxDiff < 1e-4, `max difference ${maxDiff}`)
    for (const s of [shards[0]!, shards[1]!, r]) s.drop('cmp')
  })

  test('refuses what it cannot relay: a first or last range, another range than the node\'s, a node with no layers', async () => {
    const spec = shards[1]!.spec
    const make = (endpoint: string, range: { start: number; end: number }) => createPlumiseShardSession({ endpoint, spec, range, model: 'docs-llama-7m' })
    await assert.rejects(make(node.endpoint, { start: 0, end: 3 }), (e: Error) => e instanceof PlumiseRelayError && /middle range/.test(e.message))
    await assert.rejects(make(node.endpoint, { start: 6, end: 8 }), (e: Error) => e instanceof PlumiseRelayError && /middle range/.test(e.message))
    await assert.rejects(make(node.endpoint, { start: 3, end: 5 }), (e: Error) => e instanceof PlumiseRelayError && /serves layers \[3, 6\), not \[3, 5\)/.test(e.message))
    await assert.rejects(createPlumiseShardSession({ endpoint: node.endpoint, spec, range: { start: 3, end: 6 }, model: 'other-model' }), (e: Error) => e instanceof PlumiseRelayError && /not "other-model"/.test(e.message))
    await assert.rejects(make(spare.endpoint, { start: 3, end: 6 }), (e: Error) => e instanceof PlumiseRelayError)
  })

  test('a continuation of an unknown session, token ids, or a node that went away are errors, not hangs', async () => {
    const r = await relay('bfloat16')
    const H = shards[1]!.spec.hiddenSize
    await assert.rejects(r.forward('never-started', { hidden: new Float32Array(H) }), UnknownSessionError)
    await assert.rejects(r.forward('tokens', { tokens: [1, 2] }, { reset: true }), ShardInputError)
    await assert.rejects(r.forward('ragged', { hidden: new Float32Array(H + 1) }, { reset: true }), ShardInputError)
    const gone = await createPlumiseServer({ model: 'docs-llama-7m', address: '0xGONE', eosTokenIds: [0], shard: () => shards[1] })
    const r2 = await createPlumiseShardSession({ endpoint: gone.endpoint, spec: shards[1]!.spec, range: { start: 3, end: 6 }, model: 'docs-llama-7m' })
    relays.push(r2)
    await gone.close()
    await assert.rejects(r2.forward('after-close', { hidden: new Float32Array(H) }, { reset: true }), PlumiseRelayError)
    assert.equal(r2.cachedLength('after-close'), 0)
  })
})
