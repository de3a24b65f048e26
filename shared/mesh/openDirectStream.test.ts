import assert from 'node:assert/strict'
import { connect, createServer, type AddressInfo, type Server, type Socket } from 'node:net'
import { after, before, describe, test } from 'node:test'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { circuitRelayServer, circuitRelayTransport } from '@libp2p/circuit-relay-v2'
import { identify } from '@libp2p/identify'
import { LimitedConnectionError } from '@libp2p/interface'
import { tcp } from '@libp2p/tcp'
import { webRTC } from '@libp2p/webrtc'
import { multiaddr } from '@multiformats/multiaddr'
import { createLibp2p, type Libp2p } from 'libp2p'
import { silentLogger } from '../logger.ts'
import { NoDirectConnectionError, openDirectStream } from './openDirectStream.ts'
import { planDial, p2pAddresses } from './peerAddress.ts'

// Two peers as two pages are: each reaches the other only through a relay R (circuit relay v2 with
// its default limits, so the relayed connection is limited) or over WebRTC signalled through it.
const PROTOCOL = '/shardmesh-test/direct/1.0.0'

const peer = (relayServer: boolean) =>
  createLibp2p({
    addresses: { listen: relayServer ? ['/ip4/127.0.0.1/tcp/0'] : ['/p2p-circuit', '/webrtc'] },
    transports: [tcp(), ...(relayServer ? [] : [webRTC(), circuitRelayTransport()])],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    connectionGater: { denyDialMultiaddr: async () => false },
    services: { identify: identify(), ...(relayServer ? { relay: circuitRelayServer() } : {}) },
  })

async function reserve(node: Libp2p, relay: Libp2p): Promise<string[]> {
  await node.dial(relay.getMultiaddrs()[0]!)
  const deadline = Date.now() + 10_000
  for (;;) {
    const addrs = node.getMultiaddrs().map(String)
    if (addrs.some((a) => a.includes('/p2p-circuit') && !a.includes('/webrtc')) && addrs.some((a) => a.includes('/webrtc'))) return addrs
    if (Date.now() > deadline) throw new Error(`no reservation on the relay: ${addrs.join(', ')}`)
    await new Promise((r) => setTimeout(r, 50))
  }
}

/** Writes one message on a stream and reads the answer. */
async function echo(stream: Awaited<ReturnType<Libp2p['dialProtocol']>>, text: string): Promise<string> {
  const answer = new Promise<string>((resolve) => stream.addEventListener('message', (e) => resolve(new TextDecoder().decode(e.data.subarray())), { once: true }))
  stream.send(new TextEncoder().encode(text))
  return answer
}

describe('openDirectStream: a peer first reached over a limited relay circuit', () => {
  let relay: Libp2p
  let a: Libp2p
  let b: Libp2p
  let bAddrs: string[]

  before(async () => {
    relay = await peer(true)
    ;[a, b] = await Promise.all([peer(false), peer(false)])
    await b.handle(PROTOCOL, (stream) => {
      stream.addEventListener('message', (e) => stream.send(e.data), { once: true })
    })
    bAddrs = await reserve(b, relay)
    await a.dial(relay.getMultiaddrs()[0]!)
  })
  after(async () => {
    await Promise.all([a?.stop(), b?.stop(), relay?.stop()])
  })

  const circuitOf = (addrs: string[]) => addrs.filter((x) => x.includes('/p2p-circuit') && !x.includes('/webrtc'))
  const isWebRTCFirst = (addrs: string[]) => addrs[0]?.includes('/webrtc') === true

  /** Closes A's connections to B, then starts a dial of B's circuit address (as another part of a page may). */
  async function circuitDialUnderWay() {
    await Promise.all(a.getConnections(b.peerId).map((c) => c.close()))
    return { dial: a.dial(multiaddr(circuitOf(bAddrs)[0]!)) }
  }

  test('a dial that joins a circuit dial gets the limited connection: the stream opens over WebRTC, never the relay', async () => {
    const plan = planDial({ peerId: b.peerId.toString(), multiaddrs: p2pAddresses(b.peerId.toString(), bAddrs) })
    assert.ok(isWebRTCFirst(plan.hints.map(String)), `WebRTC address first: ${plan.hints.join(', ')}`)
    // What opening a forward stream did before: libp2p joins the dial under way to the same peer.
    const first = await circuitDialUnderWay()
    await assert.rejects(a.dialProtocol(plan.hints, PROTOCOL, { signal: AbortSignal.timeout(10_000) }), LimitedConnectionError)
    assert.ok((await first.dial).limits != null, 'the circuit connection is limited')

    const second = await circuitDialUnderWay()
    const logged: string[] = []
    const logger = { ...silentLogger, info: (_: object, msg?: string) => void logged.push(msg ?? '') }
    const stream = await openDirectStream(a, plan, PROTOCOL, { signal: AbortSignal.timeout(30_000), logger })
    assert.deepEqual(logged, ['peer reached only over a limited relay circuit; dialling its /webrtc address'])
    assert.ok((await second.dial).limits != null, 'this time too the circuit dial was under way')
    assert.equal(await echo(stream, 'hidden state'), 'hidden state')
    const conn = a.getConnections(b.peerId).find((c) => c.streams.some((s) => s.id === stream.id))
    assert.ok(conn, "the stream is on one of A's connections to B")
    assert.equal(conn.limits, undefined, 'not a limited connection')
    assert.ok(String(conn.remoteAddr).includes('/webrtc'), `over WebRTC: ${conn.remoteAddr}`)
    await stream.close()
  })

  test('no /webrtc address known: a clear error, not a stream over the relay', async () => {
    await Promise.all(a.getConnections(b.peerId).map((c) => c.close()))
    const plan = planDial({ peerId: b.peerId.toString(), multiaddrs: circuitOf(bAddrs) })
    await assert.rejects(openDirectStream(a, plan, PROTOCOL, { signal: AbortSignal.timeout(5_000), logger: silentLogger }), NoDirectConnectionError)
  })
})

describe('openDirectStream: a dial that stalls is made again', () => {
  let a: Libp2p
  let b: Libp2p
  let proxy: Server
  const held: Socket[] = []

  before(async () => {
    ;[a, b] = await Promise.all([peer(true), peer(true)])
    await b.handle(PROTOCOL, (stream) => {
      stream.addEventListener('message', (e) => stream.send(e.data), { once: true })
    })
    const targetPort = Number(b.getMultiaddrs()[0]!.getComponents().find((c) => c.name === 'tcp')!.value)
    // B's one address goes through this proxy: its first connection is accepted and never answered
    // (as a stalled ICE check is), later ones reach B.
    proxy = createServer((socket) => {
      if (held.length === 0) return void held.push(socket)
      const upstream = connect(targetPort, '127.0.0.1')
      socket.pipe(upstream).pipe(socket)
      for (const s of [socket, upstream]) s.on('error', () => socket.destroy())
    })
    await new Promise<void>((r) => proxy.listen(0, '127.0.0.1', r))
  })
  after(async () => {
    for (const s of held) s.destroy()
    proxy?.close()
    await Promise.all([a?.stop(), b?.stop()])
  })

  test('the stalled attempt is abandoned after attemptMs and the second one opens the stream', async () => {
    const port = (proxy.address() as AddressInfo).port
    const plan = planDial({ peerId: b.peerId.toString(), multiaddrs: [`/ip4/127.0.0.1/tcp/${port}/p2p/${b.peerId}`] })
    const warned: object[] = []
    const logger = { ...silentLogger, warn: (obj: object) => void warned.push(obj) }
    const stream = await openDirectStream(a, plan, PROTOCOL, { signal: AbortSignal.timeout(20_000), logger, attemptMs: 1500 })
    assert.equal(held.length, 1, 'the first connection was held')
    assert.deepEqual(warned, [{ peer: b.peerId.toString(), attempt: 1, attemptMs: 1500 }])
    assert.equal(await echo(stream, 'hidden state'), 'hidden state')
    await stream.close()
  })

  test('a dial that fails outright is not made again: its error, at once', async () => {
    await Promise.all(a.getConnections(b.peerId).map((c) => c.close()))
    const closed = createServer((socket) => socket.destroy())
    await new Promise<void>((r) => closed.listen(0, '127.0.0.1', r))
    const port = (closed.address() as AddressInfo).port
    const plan = planDial({ peerId: b.peerId.toString(), multiaddrs: [`/ip4/127.0.0.1/tcp/${port}/p2p/${b.peerId}`] })
    const warned: object[] = []
    const t0 = performance.now()
    await assert.rejects(openDirectStream(a, plan, PROTOCOL, { signal: AbortSignal.timeout(20_000), logger: { ...silentLogger, warn: (o: object) => void warned.push(o) }, attemptMs: 5000 }))
    assert.ok(performance.now() - t0 < 5000, 'failed before one attempt could stall')
    assert.deepEqual(warned, [])
    closed.close()
  })
})
