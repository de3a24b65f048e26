import assert from 'node:assert/strict'
import { createServer, type Server } from 'node:net'
import { create, type MessageInitShape } from '@bufbuild/protobuf'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import type { Stream } from '@libp2p/interface'
import { lpStream } from '@libp2p/utils'
import { multiaddr } from '@multiformats/multiaddr'
import { after, before, describe, test } from 'node:test'
import { ErrorCode, FrameSchema, OpenSessionSchema, type Frame } from '../../proto/gen/mesh_pb.js'
import { loadShards } from '../engine/loadShards.ts'
import { nodeRuntime } from '../../node-host/engine/nodeRuntime.ts'
import { createNodeLibp2p, type NodeLibp2p } from '../../node-host/mesh/createNodeLibp2p.ts'
import { fileModelSource } from '../../node-host/model/fileModelSource.ts'
import { loadFixture, type Fixture } from '../../testing/fixtures.ts'
import { FORWARD_PROTOCOL, decodeFrame, encodeFrame } from './frames.ts'
import { createForwardService, type ForwardService } from './forwardService.ts'
import type { PeerShard } from './planRoute.ts'

const MODEL = 'docs-llama-7m'

/** Frames arriving on a peer's forward-protocol streams (tokens sent to it as an origin). */
function collect(node: NodeLibp2p) {
  const frames: Frame[] = []
  void node.handle(FORWARD_PROTOCOL, async (stream) => {
    const lp = lpStream(stream)
    try {
      for (;;) frames.push(decodeFrame((await lp.read()).subarray()))
    } catch {
      // stream ended
    }
  })
  return {
    frames,
    async next(pred: (f: Frame) => boolean, ms = 5000): Promise<Frame> {
      const deadline = Date.now() + ms
      for (;;) {
        const i = frames.findIndex(pred)
        if (i >= 0) return frames.splice(i, 1)[0]!
        if (Date.now() > deadline) throw new Error('no such frame')
        await new Promise((r) => setTimeout(r, 10))
      }
    },
  }
}

describe('forward protocol security: peers cannot act for others', () => {
  let fixture: Fixture
  const nodes: NodeLibp2p[] = []
  const hosts: Array<{ node: NodeLibp2p; service: ForwardService; peer: PeerShard }> = []
  let canary: Server
  let canaryPort = 0
  let dialled = 0

  const make = async () => {
    const n = await createNodeLibp2p({ privateKey: await generateKeyPair('Ed25519'), relay: false })
    nodes.push(n)
    return n
  }
  const frame = (kind: NonNullable<MessageInitShape<typeof FrameSchema>['kind']>) => create(FrameSchema, { kind })
  const open = (o: MessageInitShape<typeof OpenSessionSchema>) => frame({ case: 'open', value: { model: MODEL, ...o } })
  const tokens = (sessionId: string, step: number, positionOffset: number, ids: number[]) => frame({ case: 'forward', value: { sessionId, step: BigInt(step), positionOffset, input: { case: 'tokens', value: { ids } } } })

  /** A raw stream from `from` to a host, with frame writes and reads. */
  async function streamTo(from: NodeLibp2p, to: NodeLibp2p) {
    const stream: Stream = await from.dialProtocol(to.getMultiaddrs().map((a) => multiaddr(String(a))), FORWARD_PROTOCOL, { signal: AbortSignal.timeout(5000) })
    const lp = lpStream(stream, { maxDataLength: 16 << 20 })
    return {
      write: (f: Frame) => lp.write(encodeFrame(f), { signal: AbortSignal.timeout(5000) }),
      read: async (ms = 5000): Promise<Frame> => decodeFrame((await lp.read({ signal: AbortSignal.timeout(ms) })).subarray()),
      abort: () => stream.abort(new Error('done')),
    }
  }

  before(async () => {
    fixture = await loadFixture(MODEL)
    canary = createServer((socket) => (dialled++, socket.destroy()))
    await new Promise<void>((resolve) => canary.listen(0, '127.0.0.1', resolve))
    canaryPort = (canary.address() as { port: number }).port
    const source = fileModelSource(fixture.dir)
    for (const range of [{ start: 0, end: 3 }, { start: 3, end: 6 }, { start: 6, end: 8 }, { start: 0, end: 8 }]) {
      const node = await createNodeLibp2p({ privateKey: await generateKeyPair('Ed25519') })
      nodes.push(node)
      const { spec, shards } = await loadShards({ source, runtime: nodeRuntime(), device: 'cpu', ranges: [range] })
      const service = createForwardService({ node, model: MODEL, hiddenSize: spec.hiddenSize, shard: shards[0], stepTimeoutMs: 5000, maxSessionsPerPeer: 2, maxStreamsPerPeer: 3 })
      await service.start()
      hosts.push({ node, service, peer: { peerId: node.peerId.toString(), multiaddrs: node.getMultiaddrs().map(String), ...range, latencyMs: 3 } })
    }
  })
  after(async () => {
    for (const n of nodes) await n.stop()
    canary.close()
  })

  test('a next hop or origin named by address (no /p2p/<peer>, a DNS name, another peer\'s id) is refused with an error frame; nothing else is dialled', async () => {
    const [, b, c] = hosts
    const attacker = await make()
    collect(attacker)
    const canaryAt = `/ip4/127.0.0.1/tcp/${canaryPort}`
    const badNext = [[canaryAt], [`/dns4/localhost/tcp/${canaryPort}/p2p/${c!.peer.peerId}`], [`${canaryAt}/p2p/${attacker.peerId}`]]
    for (const multiaddrs of badNext) {
      const s = await streamTo(attacker, b!.node)
      await s.write(open({ sessionId: `bad-next-${multiaddrs[0]}`, range: { start: 3, end: 6 }, next: [{ peerId: c!.peer.peerId, multiaddrs, range: { start: 6, end: 8 } }], origin: { peerId: attacker.peerId.toString(), multiaddrs: [] } }))
      const reply = await s.read()
      assert.equal(reply.kind.case, 'error', multiaddrs[0])
      assert.equal(reply.kind.case === 'error' && reply.kind.value.code, ErrorCode.MALFORMED_FRAME, multiaddrs[0])
      s.abort()
    }
    // The last shard sends tokens to the origin by peer id; addresses named for it are never dialled.
    const s = await streamTo(attacker, c!.node)
    await s.write(open({ sessionId: 'origin-elsewhere', range: { start: 6, end: 8 }, origin: { peerId: attacker.peerId.toString(), multiaddrs: [canaryAt, `/dns4/localhost/tcp/${canaryPort}`] } }))
    await new Promise((r) => setTimeout(r, 500))
    s.abort()
    assert.equal(dialled, 0, 'connections made to addresses a session opener named')
  })

  test('sessions are keyed by (peer, session id): another peer can neither continue, reset nor probe a session', async () => {
    const full = hosts[3]!
    const p = fixture.prompts[0]!
    const victim = await make()
    const got = collect(victim)
    const attacker = await make()
    collect(attacker)
    const id = 'shared-session-id'
    const v = await streamTo(victim, full.node)
    await v.write(open({ sessionId: id, range: { start: 0, end: 8 }, origin: { peerId: victim.peerId.toString(), multiaddrs: [] } }))
    await v.write(tokens(id, 0, 0, p.input_ids))
    const t0 = await got.next((f) => f.kind.case === 'token' && f.kind.value.step === 0n)
    assert.equal(t0.kind.case === 'token' && t0.kind.value.id, p.greedy_new_ids[0])

    const cached = p.input_ids.length
    // Continue it at the right offset, probe its length with a wrong one, reset it: each from another peer.
    for (const attempt of [tokens(id, 1, cached, [p.greedy_new_ids[0]!]), tokens(id, 1, 999, [1]), tokens(id, 0, 0, [1, 2, 3])]) {
      const s = await streamTo(attacker, full.node)
      await s.write(open({ sessionId: id, range: { start: 0, end: 8 }, origin: { peerId: attacker.peerId.toString(), multiaddrs: [] } }))
      await s.write(attempt)
      if (attempt.kind.case === 'forward' && attempt.kind.value.step > 0n) {
        const reply = await s.read()
        assert.equal(reply.kind.case, 'error')
        if (reply.kind.case === 'error') {
          assert.equal(reply.kind.value.code, ErrorCode.UNKNOWN_SESSION)
          assert.ok(!reply.kind.value.message.includes(`${cached} positions`), `leaks the victim's cached length: ${reply.kind.value.message}`)
        }
      } else await new Promise((r) => setTimeout(r, 300))
      s.abort()
    }
    await new Promise((r) => setTimeout(r, 200))
    // The victim's session goes on untouched: the reference token at the next step.
    await v.write(tokens(id, 1, cached, [p.greedy_new_ids[0]!]))
    const t1 = await got.next((f) => f.kind.case !== 'token' || f.kind.value.step === 1n)
    assert.equal(t1.kind.case, 'token', t1.kind.case === 'error' ? t1.kind.value.message : '')
    assert.equal(t1.kind.case === 'token' && t1.kind.value.id, p.greedy_new_ids[1])
    v.abort()
  })

  test('the origin takes tokens only from the last hop, and an error\'s blame only for a peer on the route', async () => {
    const [a, b, c] = hosts
    const p = fixture.prompts[1]!
    const originNode = await make()
    const origin = createForwardService({ node: originNode, model: MODEL, hiddenSize: 256, stepTimeoutMs: 5000 })
    await origin.start()
    // A first hop that lies: a token and an error (blaming the last hop) on a stream of its own, then an error blaming a stranger.
    const liar = await make()
    const stranger = peerIdFromPrivateKey(await generateKeyPair('Ed25519')).toString()
    await liar.handle(FORWARD_PROTOCOL, async (stream) => {
      const lp = lpStream(stream)
      const first = decodeFrame((await lp.read()).subarray())
      if (first.kind.case !== 'open') return
      const sessionId = first.kind.value.sessionId
      const side = lpStream(await liar.dialProtocol(originNode.getMultiaddrs().map((x) => multiaddr(String(x))), FORWARD_PROTOCOL))
      await side.write(encodeFrame(frame({ case: 'token', value: { sessionId, step: 0n, id: 77 } })))
      await side.write(encodeFrame(frame({ case: 'error', value: { sessionId, code: ErrorCode.INTERNAL, message: 'the last hop failed', peerId: c!.peer.peerId } })))
      await new Promise((r) => setTimeout(r, 300))
      await lp.write(encodeFrame(frame({ case: 'error', value: { sessionId, code: ErrorCode.INTERNAL, message: 'a stranger failed', peerId: stranger } })))
      await stream.close().catch(() => undefined)
    })
    const liarPeer: PeerShard = { peerId: liar.peerId.toString(), multiaddrs: liar.getMultiaddrs().map(String), start: 0, end: 3, latencyMs: 1 }
    const peers = [liarPeer, a!.peer, b!.peer, c!.peer]
    const r = await origin.generate({ peers: () => peers, numLayers: 8, inputIds: p.input_ids, maxNewTokens: 6, maxFailovers: 2 })
    assert.deepEqual(r.routes[0], [liarPeer.peerId, b!.peer.peerId, c!.peer.peerId])
    assert.deepEqual(r.routes[1], [a!.peer.peerId, b!.peer.peerId, c!.peer.peerId], 'the liar is routed around, the last hop it blamed is not')
    assert.equal(r.failovers, 1)
    assert.deepEqual(r.outputIds, p.greedy_new_ids.slice(0, 6))
  })

  test('a hop may blame only a peer after it: a middle hop blaming the first hop gets the blame itself', async () => {
    const [a, b, c] = hosts
    const p = fixture.prompts[1]!
    const originNode = await make()
    const origin = createForwardService({ node: originNode, model: MODEL, hiddenSize: 256, stepTimeoutMs: 5000 })
    await origin.start()
    const liar = await make()
    await liar.handle(FORWARD_PROTOCOL, async (stream) => {
      const lp = lpStream(stream)
      const first = decodeFrame((await lp.read()).subarray())
      if (first.kind.case !== 'open') return
      await lp.write(encodeFrame(frame({ case: 'error', value: { sessionId: first.kind.value.sessionId, code: ErrorCode.INTERNAL, message: 'the first hop failed', peerId: a!.peer.peerId } })))
      await stream.close().catch(() => undefined)
    })
    const liarPeer: PeerShard = { peerId: liar.peerId.toString(), multiaddrs: liar.getMultiaddrs().map(String), start: 3, end: 6, latencyMs: 1 }
    const peers = [a!.peer, liarPeer, b!.peer, c!.peer]
    const r = await origin.generate({ peers: () => peers, numLayers: 8, inputIds: p.input_ids, maxNewTokens: 4, maxFailovers: 2 })
    assert.deepEqual(r.routes[0], [a!.peer.peerId, liarPeer.peerId, c!.peer.peerId])
    assert.deepEqual(r.routes[1], [a!.peer.peerId, b!.peer.peerId, c!.peer.peerId], 'the first hop relayed the blame onto the liar')
    assert.deepEqual(r.outputIds, p.greedy_new_ids.slice(0, 4))
  })

  test('per-peer caps: sessions and streams past them get an OVERLOADED error frame; other peers are still served', async () => {
    const full = hosts[3]!
    const p = fixture.prompts[1]!
    const greedy = await make()
    collect(greedy)
    const openFrom = async (i: number) => {
      const s = await streamTo(greedy, full.node)
      await s.write(open({ sessionId: `cap-${i}`, range: { start: 0, end: 8 }, origin: { peerId: greedy.peerId.toString(), multiaddrs: [] } }))
      return s
    }
    const held = [await openFrom(0), await openFrom(1)]
    await new Promise((r) => setTimeout(r, 200))
    const third = await openFrom(2)
    const refused = await third.read()
    assert.ok(refused.kind.case === 'error' && refused.kind.value.code === ErrorCode.OVERLOADED, JSON.stringify(refused.kind.value))
    third.abort()
    // A third stream that says nothing yet, then a fourth: past the stream cap.
    const silent = await streamTo(greedy, full.node)
    await new Promise((r) => setTimeout(r, 200))
    const fourth = await streamTo(greedy, full.node)
    const refusedStream = await fourth.read()
    assert.ok(refusedStream.kind.case === 'error' && refusedStream.kind.value.code === ErrorCode.OVERLOADED, JSON.stringify(refusedStream.kind.value))
    // Another peer is served meanwhile.
    const other = await make()
    const got = collect(other)
    const s = await streamTo(other, full.node)
    await s.write(open({ sessionId: 'cap-other', range: { start: 0, end: 8 }, origin: { peerId: other.peerId.toString(), multiaddrs: [] } }))
    await s.write(tokens('cap-other', 0, 0, p.input_ids))
    const t = await got.next((f) => f.kind.case === 'token' || f.kind.case === 'error')
    assert.equal(t.kind.case === 'token' && t.kind.value.id, p.greedy_new_ids[0])
    for (const x of [...held, silent, fourth, s]) x.abort()
  })
})
