import assert from 'node:assert/strict'
import { after, before, describe, test } from 'node:test'
import { loadShards } from '../../shared/engine/loadShards.ts'
import type { ShardSession } from '../../shared/engine/shardSession.ts'
import { loadTokenizer, type TextTokenizer } from '../../shared/model/tokenizer.ts'
import { nodeRuntime } from '../engine/nodeRuntime.ts'
import { fileModelSource } from '../model/fileModelSource.ts'
import { loadFixture, type Fixture, type FixturePrompt } from '../../testing/fixtures.ts'
import { createPlumiseClient, type ForwardRequestInit, type PlumiseClient } from './plumiseClient.ts'
import { plumiseGenerate } from './plumiseGenerate.ts'
import { createPlumiseServer, type PlumiseServer } from './plumiseServer.ts'
import { encodePlumiseHidden, PLUMISE_DTYPES } from './plumiseTensor.ts'
import { createPrefixKvCache } from './prefixKvCache.ts'
import { writeStoredZip } from './storedZip.ts'

const GREEDY = { doSample: false, repetitionPenalty: 1 }
/** The reference continuation up to (not including) EOS, as Plumise reports it (is_eos, no token). */
const expected = (p: FixturePrompt) => (p.greedy_new_ids.indexOf(0) >= 0 ? p.greedy_new_ids.slice(0, p.greedy_new_ids.indexOf(0)) : p.greedy_new_ids)

describe('Plumise gRPC InferencePipeline: docs-llama-7m on three hosts [0,3) [3,6) [6,8)', () => {
  let fixture: Fixture
  let tokenizer: TextTokenizer
  let shards: ShardSession[]
  const servers: Record<string, PlumiseServer> = {}
  const clients: PlumiseClient[] = []
  const client = (s: PlumiseServer) => {
    const c = createPlumiseClient(s.endpoint)
    clients.push(c)
    return c
  }

  before(async () => {
    fixture = await loadFixture('docs-llama-7m')
    const source = fileModelSource(fixture.dir)
    tokenizer = await loadTokenizer(source)
    ;({ shards } = await loadShards({ source, runtime: nodeRuntime(), device: 'cpu', ranges: [{ start: 0, end: 3 }, { start: 3, end: 6 }, { start: 6, end: 8 }] }))
    const base = { model: 'docs-llama-7m', eosTokenIds: [0], tokenizer }
    // Two chains over the same shards: with the KV cache by request id, and without (upstream's full recompute).
    for (const cache of [true, false]) {
      const k = cache ? 'cached' : 'full'
      const last = await createPlumiseServer({ ...base, cache, address: `0xLAST${k}`, shard: () => shards[2] })
      const middle = await createPlumiseServer({ ...base, cache, address: `0xMID${k}`, shard: () => shards[1], next: () => last.endpoint })
      const first = await createPlumiseServer({ ...base, cache, address: `0xFIRST${k}`, shard: () => shards[0], next: () => middle.endpoint, after: () => [last.endpoint] })
      Object.assign(servers, { [`last-${k}`]: last, [`middle-${k}`]: middle, [`first-${k}`]: first })
    }
  })
  after(async () => {
    for (const c of clients) c.close()
    for (const s of Object.values(servers)) await s.close()
    for (const s of shards ?? []) await s.dispose()
  })

  test('Ping and GetLayerInfo are filled in', async () => {
    const c = client(servers['middle-cached']!)
    const ping = await c.ping()
    assert.equal(ping.agentAddress, '0xMIDcached')
    assert.equal(ping.modelName, 'docs-llama-7m')
    assert.deepEqual([ping.layerStart, ping.layerEnd, ping.isReady], [3, 6, true])
    assert.ok(ping.uptimeSeconds >= 0n)
    const info = await c.getLayerInfo()
    assert.deepEqual([info.modelName, info.layerStart, info.layerEnd, info.totalLayers, info.device, info.isReady], ['docs-llama-7m', 3, 6, 8, 'cpu', true])
  })

  for (const mode of ['full', 'cached'] as const) {
    test(`three hosts over gRPC (${mode === 'full' ? 'full-sequence recompute' : 'KV cache by request id'}) give the reference greedy tokens`, async () => {
      const c = client(servers[`middle-${mode}`]!)
      const before = servers[`middle-${mode}`]!.counters().tokens
      let steps = 0
      for (const p of fixture.prompts) {
        // the first host runs upstream's loop: full sequence through its layers, ForwardPass to the middle, which forwards to the last
        const r = await plumiseGenerate({
          first: createPrefixKvCache({ shard: shards[0]!, enabled: mode === 'cached' }),
          hiddenSize: 256,
          route: { client: c, endpoints: [servers[`last-${mode}`]!.endpoint] },
          inputIds: p.input_ids,
          params: { ...GREEDY, maxNewTokens: p.new_tokens },
          eosTokenIds: [0],
        })
        assert.deepEqual(r.ids, expected(p))
        assert.equal(r.finishReason, p.greedy_new_ids.includes(0) ? 'eos' : 'length')
        steps += r.ids.length + (r.finishReason === 'eos' ? 1 : 0)
      }
      // positions computed by the middle host: every step in full, or the prompt then one per step
      const computed = servers[`middle-${mode}`]!.counters().tokens - before
      const prompts = fixture.prompts.reduce((a, p) => a + p.input_ids.length, 0)
      if (mode === 'cached') assert.equal(computed, prompts + steps - fixture.prompts.length, 'prompt once, then one new position per step')
      else assert.ok(computed > prompts * 10, `full recompute runs every position every step (${computed})`)
    })
  }

  /** The hidden state after layers [0, 6) for a prompt, computed in-process (what a first and a middle node would send on). */
  async function hiddenAfter(layers: 3 | 6, ids: number[], id: string): Promise<Float32Array> {
    const a = await shards[0]!.forward(`${id}-a`, { tokens: ids }, { reset: true })
    shards[0]!.drop(`${id}-a`)
    if (layers === 3) return a.hidden!
    const b = await shards[1]!.forward(`${id}-b`, { hidden: a.hidden! }, { reset: true })
    shards[1]!.drop(`${id}-b`)
    return b.hidden!
  }

  test('each dtype: the last node answers the reference token, a middle node answers hidden states in the same dtype', async () => {
    const p = fixture.prompts[0]!
    const h6 = await hiddenAfter(6, p.input_ids, 'dtype6')
    const h3 = await hiddenAfter(3, p.input_ids, 'dtype3')
    const last = client(servers['last-full']!)
    const middle = client(servers['middle-full']!)
    for (const dtype of PLUMISE_DTYPES) {
      const r = await last.forwardPass({ requestId: `dt-${dtype}_s0`, ...encodePlumiseHidden(h6, 256, dtype), params: GREEDY, metadata: { totalNodes: 3, nodeIndex: 2, isLast: true } })
      assert.equal(r.success, true, r.error)
      assert.equal(r.nextTokenId, p.greedy_new_ids[0], dtype)
      assert.deepEqual([r.isEos, r.numTokens], [false, 1])
      assert.equal(r.generatedText, tokenizer.decode([r.nextTokenId]))
      assert.ok(r.latencyMs > 0)
      const m = await middle.forwardPass({ requestId: `dtm-${dtype}_s0`, ...encodePlumiseHidden(h3, 256, dtype), metadata: { totalNodes: 3, nodeIndex: 1 } })
      assert.equal(m.success, true, m.error)
      assert.equal(m.dtype, dtype)
      assert.deepEqual(m.shape, [1n, BigInt(p.input_ids.length), 256n])
      // and that hidden state, sent on to the last node, gives the same token
      const r2 = await last.forwardPass({ requestId: `dtl-${dtype}_s0`, hiddenStates: m.hiddenStates, shape: m.shape, dtype: m.dtype, params: GREEDY })
      assert.equal(r2.nextTokenId, p.greedy_new_ids[0], `${dtype} through the middle node`)
    }
  })

  test('every malformed request is answered success=false with a message, and the server goes on', async () => {
    const p = fixture.prompts[0]!
    const h3 = await hiddenAfter(3, p.input_ids, 'bad')
    const ok = { requestId: 'bad_s0', ...encodePlumiseHidden(h3, 256, 'float32') }
    const evilPickle = writeStoredZip([
      { name: 'archive/data.pkl', data: Uint8Array.from('\x80\x02cos\nsystem\nX\x02\x00\x00\x00idq\x00\x85R.', (ch) => ch.charCodeAt(0)) },
      { name: 'archive/version', data: new TextEncoder().encode('3\n') },
    ])
    const cases: [string, ForwardRequestInit, RegExp][] = [
      ['empty request', {}, /dtype/],
      ['unknown dtype', { ...ok, dtype: 'int8' }, /unsupported dtype "int8"/],
      ['two-dimensional shape', { ...ok, shape: [BigInt(p.input_ids.length), 256n] }, /not \[1, seq, 256\]/],
      ['wrong hidden size', { ...ok, shape: [1n, 13n, 128n] }, /not \[1, seq, 256\]/],
      ['batch of two', { ...ok, shape: [2n, 13n, 256n] }, /not \[1, seq, 256\]/],
      ['negative length', { ...ok, shape: [1n, -1n, 256n] }, /not \[1, seq, 256\]/],
      ['huge length', { ...ok, shape: [1n, 1n << 40n, 256n] }, /over the message limit/],
      ['short bytes', { ...ok, hiddenStates: ok.hiddenStates.subarray(8) }, /need \d+ bytes/],
      ['bfloat16 that is not an archive', { ...ok, dtype: 'bfloat16' }, /not a torch.save archive/],
      ['archive with a forbidden global', { ...ok, dtype: 'bfloat16', hiddenStates: evilPickle }, /global os\.system is not allowed/],
      ['is_last on a middle node', { ...ok, metadata: { isLast: true } }, /is_last is set/],
      ['past tokens outside the vocabulary', { ...ok, pastTokenIds: [-5] }, /past_token_ids/],
      ['attention mask of zeros', { ...ok, attentionMask: new Uint8Array(13 * 4), attentionMaskShape: [1n, 13n] }, /attention masks other than all ones/],
      ['attention mask of the wrong size', { ...ok, attentionMask: new Uint8Array(3), attentionMaskShape: [1n, 13n] }, /attention_mask/],
    ]
    const middle = client(servers['middle-cached']!)
    for (const [why, req, message] of cases) {
      const r = await middle.forwardPass(req)
      assert.equal(r.success, false, why)
      assert.match(r.error, message, why)
    }
    // hidden states sent to the node that holds the embeddings
    const first = await client(servers['first-cached']!).forwardPass(ok)
    assert.equal(first.success, false)
    assert.match(first.error, /embeddings/)
    // asked to forward with no next node known
    const last = await client(servers['last-cached']!).forwardPass({ ...ok, ...encodePlumiseHidden(h3, 256, 'float32') })
    assert.equal(last.success, true, 'the last node ignores next_node_endpoint')
    const lonely = await createPlumiseServer({ model: 'docs-llama-7m', address: '0x', eosTokenIds: [0], shard: () => shards[1] })
    try {
      const r = await client(lonely).forwardPass({ ...ok, metadata: { nextNodeEndpoint: 'http://127.0.0.1:1' } })
      assert.equal(r.success, false)
      assert.match(r.error, /knows no next node/)
      // a next node that is down is a success=false answer too, not a status
      const dangling = await createPlumiseServer({ model: 'docs-llama-7m', address: '0x', eosTokenIds: [0], shard: () => shards[1], next: () => 'http://127.0.0.1:1' })
      const d = await client(dangling).forwardPass({ ...ok, metadata: { nextNodeEndpoint: 'x' } })
      await dangling.close()
      assert.equal(d.success, false)
      assert.match(d.error, /next node http:\/\/127\.0\.0\.1:1/)
    } finally {
      await lonely.close()
    }
    // a server with no layers yet
    const empty = await createPlumiseServer({ model: 'm', address: '0x', eosTokenIds: [0], shard: () => undefined })
    try {
      const r = await client(empty).forwardPass(ok)
      assert.deepEqual([r.success, r.error], [false, 'this node serves no layers yet'])
      assert.equal((await client(empty).ping()).isReady, false)
    } finally {
      await empty.close()
    }
    assert.equal((await middle.ping()).isReady, true)
  })

  test('the KV cache recomputes when the re-sent prefix differs, and answers as a full recompute would', async () => {
    const [p0, p1] = fixture.prompts as [FixturePrompt, FixturePrompt]
    const last = client(servers['last-cached']!)
    const h0 = await hiddenAfter(6, p0.input_ids, 'kv0')
    // step 0 of a generation caches prompt 0 under prefix "kv"
    const a = await last.forwardPass({ requestId: 'kv_s0', ...encodePlumiseHidden(h0, 256, 'float32'), params: GREEDY })
    assert.equal(a.nextTokenId, p0.greedy_new_ids[0])
    // step 1 under the same prefix, but a longer, different sequence (prompt 1 + 6 tokens): must not reuse prompt 0's cache
    const ids1 = [...p1.input_ids, ...p1.greedy_new_ids.slice(0, 6)]
    assert.ok(ids1.length > p0.input_ids.length)
    const h1 = await hiddenAfter(6, ids1, 'kv1')
    const computed = () => servers['last-cached']!.counters().tokens
    const t1 = computed()
    const b = await last.forwardPass({ requestId: 'kv_s1', ...encodePlumiseHidden(h1, 256, 'float32'), params: GREEDY })
    assert.equal(b.nextTokenId, p1.greedy_new_ids[6])
    assert.equal(computed() - t1, ids1.length, 'a prefix that differs is recomputed in full')
    const t2 = computed()
    // and the matching continuation of that sequence is a hit
    const ids2 = [...ids1, p1.greedy_new_ids[6]!]
    const c = await last.forwardPass({ requestId: 'kv_s2', ...encodePlumiseHidden(await hiddenAfter(6, ids2, 'kv2'), 256, 'float32'), params: GREEDY })
    assert.equal(c.nextTokenId, p1.greedy_new_ids[7])
    assert.equal(computed() - t2, 1, 'only the new position')
    // a request without an id is answered but leaves nothing cached
    const entries = servers['last-cached']!.cacheStats().entries
    const anon = await last.forwardPass({ ...encodePlumiseHidden(h0, 256, 'float32'), params: GREEDY })
    assert.equal(anon.nextTokenId, p0.greedy_new_ids[0])
    assert.equal(servers['last-cached']!.cacheStats().entries, entries)

  })

  test('ForwardPassStream streams a generation from the first node, one token from a later node', async () => {
    const p = fixture.prompts[1]!
    const stream = client(servers['first-cached']!).forwardPassStream({ requestId: 'stream1', dtype: 'bfloat16', params: { ...GREEDY, maxNewTokens: 48 }, metadata: { originalPrompt: p.prompt } })
    const chunks = []
    for await (const c of stream) chunks.push(c)
    const end = chunks.at(-1)!
    assert.equal(end.isFinished, true)
    assert.equal(end.finishReason, 'eos')
    const ids = chunks.slice(0, -1).map((c) => c.tokenId)
    // bfloat16 hidden states on the wire may flip a near-tie: compare the first tokens, which are far from ties
    assert.deepEqual(ids.slice(0, 8), expected(p).slice(0, 8))
    assert.equal(chunks.map((c) => c.tokenText).join(''), tokenizer.decode(ids))
    // float32 on the wire: exactly the reference
    const exact = client(servers['first-full']!).forwardPassStream({ requestId: 'stream2', dtype: 'float32', params: { ...GREEDY, maxNewTokens: 48 }, metadata: { originalPrompt: p.prompt } })
    const exactIds = []
    for await (const c of exact) if (!c.isFinished) exactIds.push(c.tokenId)
    assert.deepEqual(exactIds, expected(p))

    const h6 = await hiddenAfter(6, p.input_ids, 'stream-last')
    const one = []
    for await (const c of client(servers['last-cached']!).forwardPassStream({ requestId: 'one_s0', ...encodePlumiseHidden(h6, 256, 'float16'), params: GREEDY })) one.push(c)
    assert.equal(one.length, 2)
    assert.deepEqual([one[0]!.tokenId, one[0]!.tokenText, one[0]!.isFinished], [p.greedy_new_ids[0], tokenizer.decode([p.greedy_new_ids[0]!]), false])
    assert.deepEqual([one[1]!.isFinished, one[1]!.finishReason], [true, 'length'])
    const bad = []
    for await (const c of client(servers['last-cached']!).forwardPassStream({ requestId: 'bad', dtype: 'nope' })) bad.push(c)
    assert.equal(bad.length, 1)
    assert.match(bad[0]!.finishReason, /^error: unsupported dtype/)
  })
})
