import assert from 'node:assert/strict'
import { create, toBinary } from '@bufbuild/protobuf'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { lpStream } from '@libp2p/utils'
import { multiaddr } from '@multiformats/multiaddr'
import { after, before, describe, test } from 'node:test'
import { FrameSchema, type Frame } from '../../proto/gen/mesh_pb.js'
import { createRng } from '../engine/sampling.ts'
import { loadShards } from '../engine/loadShards.ts'
import { nodeRuntime } from '../../node-host/engine/nodeRuntime.ts'
import { createNodeLibp2p, type NodeLibp2p } from '../../node-host/mesh/createNodeLibp2p.ts'
import { fileModelSource } from '../../node-host/model/fileModelSource.ts'
import { loadFixture } from '../../testing/fixtures.ts'
import { FORWARD_PROTOCOL, decodeFrame, encodeFrame, encodeHidden } from './frames.ts'
import { createForwardService } from './forwardService.ts'
import type { PeerShard } from './planRoute.ts'

const CASES = 2000
const MAX_FRAME = 1 << 20

describe('forward protocol fuzz: malformed and mutated frames against a host', () => {
  const nodes: NodeLibp2p[] = []
  const peers: PeerShard[] = []
  let attacker: NodeLibp2p
  let middle: PeerShard
  let origin: ReturnType<typeof createForwardService>
  const warnings: string[] = []

  before(async () => {
    const source = fileModelSource((await loadFixture('docs-llama-7m')).dir)
    for (const range of [{ start: 0, end: 3 }, { start: 3, end: 6 }, { start: 6, end: 8 }]) {
      const node = await createNodeLibp2p({ privateKey: await generateKeyPair('Ed25519') })
      const { spec, shards } = await loadShards({ source, runtime: nodeRuntime(), device: 'cpu', ranges: [range] })
      const logger = { debug() {}, info() {}, error() {}, warn: (_o: object, msg?: string) => void warnings.push(msg ?? '') }
      await createForwardService({ node, model: 'docs-llama-7m', hiddenSize: spec.hiddenSize, shard: shards[0], maxFrameBytes: MAX_FRAME, stepTimeoutMs: 2000, sessionIdleMs: 3000, logger }).start()
      nodes.push(node)
      peers.push({ peerId: node.peerId.toString(), multiaddrs: node.getMultiaddrs().map(String), ...range })
    }
    middle = peers[1]!
    attacker = await createNodeLibp2p({ privateKey: await generateKeyPair('Ed25519'), relay: false })
    origin = createForwardService({ node: attacker, model: 'docs-llama-7m', hiddenSize: 256 })
    await origin.start()
    nodes.push(attacker)
  })
  after(async () => {
    for (const n of nodes) await n.stop()
  })

  const open = (sessionId: string, model = 'docs-llama-7m', start = 3, end = 6) =>
    create(FrameSchema, { kind: { case: 'open', value: { sessionId, model, range: { start, end }, next: [{ peerId: peers[2]!.peerId, multiaddrs: peers[2]!.multiaddrs, range: { start: 6, end: 8 } }], origin: { peerId: attacker.peerId.toString(), multiaddrs: attacker.getMultiaddrs().map(String) } } } })
  const forward = (sessionId: string, rows: number, hidden = 256) =>
    create(FrameSchema, { kind: { case: 'forward', value: { sessionId, step: 0n, positionOffset: 0, input: { case: 'hidden', value: encodeHidden(new Float32Array(rows * hidden).fill(0.1), hidden) } } } })

  /**
   * One attack: the frames (or raw bytes) to write; returns how the host answered: an error frame,
   * the stream closed, or nothing within 150 ms (a mutation that stayed valid, absorbed as input).
   */
  async function attack(writes: Array<Uint8Array | { raw: Uint8Array }>, waitMs = 150): Promise<'error' | 'closed' | 'absorbed'> {
    const stream = await attacker.dialProtocol(middle.multiaddrs.map((a) => multiaddr(a)), FORWARD_PROTOCOL, { signal: AbortSignal.timeout(5000) })
    const lp = lpStream(stream, { maxDataLength: MAX_FRAME * 2 })
    try {
      for (const w of writes) {
        if ('raw' in w) stream.send(w.raw)
        else await lp.write(w, { signal: AbortSignal.timeout(2000) })
      }
      const reply = await lp.read({ signal: AbortSignal.timeout(waitMs) })
      const f = decodeFrame(reply.subarray())
      return f.kind.case === 'error' ? 'error' : 'closed'
    } catch (e) {
      return (e as Error).name === 'TimeoutError' ? 'absorbed' : 'closed'
    } finally {
      stream.abort(new Error('done'))
    }
  }

  test(`${CASES} malformed frames: each answered with an error or dropped; a valid session beside them completes`, async () => {
    const p = (await loadFixture('docs-llama-7m')).prompts[0]!
    const valid = origin.generate({ peers: () => peers, numLayers: 8, inputIds: p.input_ids, maxNewTokens: p.new_tokens, maxFailovers: 0 })
    const rng = createRng(1234)
    const int = (n: number) => Math.floor(rng() * n)
    const mutate = (bytes: Uint8Array) => {
      const out = bytes.slice()
      for (let k = 0, n = 1 + int(8); k < n; k++) out[int(out.length)] ^= 1 << int(8)
      return out
    }
    const seeds: Frame[] = [open('s'), forward('s', 2), create(FrameSchema, { kind: { case: 'close', value: { sessionId: 's' } } }), create(FrameSchema, { kind: { case: 'token', value: { sessionId: 's', id: 5 } } })]
    const counts = { error: 0, closed: 0, absorbed: 0 }
    const kinds: Record<string, number> = {}
    for (let i = 0; i < CASES; i++) {
      const id = `fuzz-${i}`
      let writes: Array<Uint8Array | { raw: Uint8Array }>
      const kind = i % 10
      switch (kind) {
        case 0: // random bytes as a frame
          writes = [Uint8Array.from({ length: int(512) }, () => int(256))]
          break
        case 1: // a mutated valid frame
          writes = [mutate(encodeFrame(seeds[int(seeds.length)]!))]
          break
        case 2: // open, then a mutated forward
          writes = [encodeFrame(open(id)), mutate(encodeFrame(forward(id, 1 + int(4))))]
          break
        case 3: // wrong hidden size
          writes = [encodeFrame(open(id)), encodeFrame(forward(id, 2, 128))]
          break
        case 4: // wrong model or range
          writes = [encodeFrame(int(2) ? open(id, 'other-model') : open(id, 'docs-llama-7m', 2, 6))]
          break
        case 5: // forward without open
          writes = [encodeFrame(forward(id, 1))]
          break
        case 6: // a continuation for a session this host never saw
          writes = [encodeFrame(open(id)), encodeFrame(create(FrameSchema, { kind: { case: 'forward', value: { sessionId: id, step: 3n, positionOffset: 40, input: { case: 'hidden', value: encodeHidden(new Float32Array(256), 256) } } } }))]
          break
        case 7: // oversize frame: a length prefix past the limit
          writes = [{ raw: Uint8Array.of(0xff, 0xff, 0xff, 0x7f) }]
          break
        case 8: // a length prefix longer than any frame's
          writes = [{ raw: Uint8Array.of(0xff, 0xff, 0xff, 0xff, 0x0f) }]
          break
        default: // a frame for another session on this stream, or an empty frame
          writes = int(2) ? [encodeFrame(open(id)), encodeFrame(forward(`${id}-other`, 1))] : [toBinary(FrameSchema, create(FrameSchema, {}))]
      }
      // Only mutations that may still be valid frames (1, 2, 9) can go unanswered: wait briefly for
      // those; every other case must be answered, so a loaded machine's slow reply is not taken for silence.
      const outcome = await attack(writes, [1, 2, 9].includes(kind) ? 150 : 5000)
      counts[outcome]++
      kinds[`${kind}:${outcome}`] = (kinds[`${kind}:${outcome}`] ?? 0) + 1
    }
    assert.equal(counts.error + counts.closed + counts.absorbed, CASES)
    // Only mutations that may have stayed valid frames can go unanswered.
    for (const k of Object.keys(kinds)) if (k.endsWith(':absorbed')) assert.ok(['1', '2', '9'].includes(k.split(':')[0]!), JSON.stringify(kinds))
    // Every deterministic bad input is answered with an error frame, not merely dropped.
    for (const k of [3, 4, 5, 6]) assert.equal(kinds[`${k}:error`], CASES / 10, `case ${k}: ${JSON.stringify(kinds)}`)
    assert.ok(counts.error > CASES / 2, JSON.stringify(kinds))
    assert.ok(warnings.length > CASES / 2, 'bad input is logged')
    // A length prefix that never ends: the host gives up at its first-frame timeout.
    assert.notEqual(await attack([{ raw: Uint8Array.from({ length: 12 }, () => 0xff) }], 4000), 'absorbed')
    const r = await valid
    assert.deepEqual(r.outputIds, p.greedy_new_ids)
    // The host still serves after all of that.
    const again = await origin.generate({ peers: () => peers, numLayers: 8, inputIds: p.input_ids, maxNewTokens: 4, maxFailovers: 0 })
    assert.deepEqual(again.outputIds, p.greedy_new_ids.slice(0, 4))
  })
})
