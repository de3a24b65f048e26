import { create, type MessageInitShape } from '@bufbuild/protobuf'
import type { Stream } from '@libp2p/interface'
import { lpStream, streamPair, type LengthPrefixedStream } from '@libp2p/utils'
import type { Multiaddr } from '@multiformats/multiaddr'
import type { PeerId } from '@libp2p/interface'
import { ErrorCode, FrameSchema, HopSchema, HopTimingSchema, SamplingSchema, type Forward, type Frame, type Hop, type Sampling } from '../../proto/gen/mesh_pb.js'
import type { GenerateResult } from '../engine/generate.ts'
import { createRng, sampleToken, type SamplingParams } from '../engine/sampling.ts'
import { UnknownSessionError, type ShardSession } from '../engine/shardSession.ts'
import { silentLogger, type Logger } from '../logger.ts'
import { BadTensorError, FORWARD_PROTOCOL, MalformedFrameError, decodeFrame, decodeHidden, encodeFrame, encodeHidden, type WireDtype } from './frames.ts'
import { planRoute, type PeerShard } from './planRoute.ts'
import { createShardLoad } from './shardLoad.ts'
import { UnplannedAddressError, p2pAddresses, planDial, type DialPlan } from './peerAddress.ts'
import { createPeerLimit } from './peerLimits.ts'

/** An open connection to a peer; its remote peer id is the one Noise authenticated. */
export type MeshConnection = {
  remotePeer: { toString(): string }
  newStream(protocol: string, opts?: { signal?: AbortSignal }): Promise<Stream>
}

/** What the service needs of a libp2p node (browser and Node nodes both fit). */
export type MeshNode = {
  peerId: { toString(): string }
  getMultiaddrs(): Array<{ toString(): string }>
  handle(protocol: string, handler: (stream: Stream, connection: MeshConnection) => void | Promise<void>, opts?: { maxInboundStreams?: number; maxOutboundStreams?: number }): Promise<void>
  unhandle(protocol: string): Promise<void>
  dial(peer: Multiaddr | Multiaddr[] | PeerId, opts?: { signal?: AbortSignal }): Promise<MeshConnection>
  dialProtocol(peer: Multiaddr[] | PeerId, protocol: string, opts?: { signal?: AbortSignal }): Promise<Stream>
  addEventListener(type: 'peer:identify', listener: (evt: CustomEvent<{ peerId: { toString(): string }; protocols: string[] }>) => void): void
  removeEventListener(type: 'peer:identify', listener: (evt: CustomEvent<{ peerId: { toString(): string }; protocols: string[] }>) => void): void
}

export type ForwardServiceInit = {
  node: MeshNode
  /** Model name on the wire. */
  model: string
  /** Hidden size of the model (to validate tensors). */
  hiddenSize: number
  /** The shard this peer runs; absent on an origin-only peer. */
  shard?: ShardSession
  logger?: Logger
  /** Frames above this are refused; larger prefills are cut into chunks. @default 8 MiB */
  maxFrameBytes?: number
  /** Hidden states on the wire. @default 'float16' */
  wireDtype?: WireDtype
  /** Longest wait for a token (origin) or a frame's processing. @default 30 s */
  stepTimeoutMs?: number
  /** A served session with no frame for this long is closed (its KV cache freed). @default 120 s */
  sessionIdleMs?: number
  /** Sessions one remote peer may have open here at once; past it, an OVERLOADED error frame. @default 128 */
  maxSessionsPerPeer?: number
  /** Inbound forward streams (sessions and token streams) one remote peer may have open at once. @default 256 */
  maxStreamsPerPeer?: number
}

export class MeshError extends Error {
  readonly code: ErrorCode
  /** The peer that failed, when known. */
  readonly peerId: string

  constructor(code: ErrorCode, message: string, peerId = '') {
    super(message)
    this.code = code
    this.peerId = peerId
    this.name = 'MeshError'
  }
}

export type MeshGenerateParameters = {
  /** Peers that serve the model's layers; a route is planned through them, and re-planned on failure. */
  peers: () => PeerShard[]
  numLayers: number
  inputIds: number[]
  maxNewTokens: number
  sampling?: SamplingParams
  eosTokenIds?: number[]
  /** Each token as it arrives, with each hop's compute and total ms for this step (from the token frame). */
  onToken?: (id: number, index: number, timings: HopTimingMs[]) => void | 'stop'
  signal?: AbortSignal
  /** How many re-plans after failures. @default 3 */
  maxFailovers?: number
  /** Called before re-planning after a failure (e.g. to refresh what is known of the peers). */
  beforeReplan?: () => Promise<void>
  /**
   * No route covers the layers now (the last copy of a range was lost and is being repaired):
   * resolves once `routable()` holds, or throws (NoRouteError) when the caller stops waiting.
   * Without it a missing route is a NoRouteError at once. The generation then replays as after a failure.
   */
  waitForRoute?: (routable: () => boolean) => Promise<void>
}

/** One hop's share of a step, as the token frame reports it. */
export type HopTimingMs = { peerId: string; computeMs: number; totalMs: number }

export type MeshGenerateResult = GenerateResult & {
  /** Routes used, in order (more than one after a failover). */
  routes: string[][]
  failovers: number
}

/** Served-work counters of one peer's shard, cumulative since the service started. */
export type ForwardServiceStats = {
  /** Positions (tokens of the prompt and of each step) run through this peer's layers. */
  processedTokens: number
  /** Sessions opened on this peer's shard. */
  sessions: number
  /** Forward frames computed (a prefill chunk or one decode step each). */
  steps: number
  /** Time spent computing those frames, ms. */
  computeMs: number
}

type Lp = LengthPrefixedStream<Stream>

/** Per-step sampler seed: a replay through a new route draws the same numbers. */
const stepSeed = (seed: number, step: number) => (Math.imul(seed >>> 0, 0x9e3779b1) ^ Math.imul(step + 1, 0x85ebca6b)) >>> 0

function toWireSampling(s: SamplingParams = {}): Sampling {
  const temperature = s.temperature ?? 0
  return create(SamplingSchema, {
    temperature,
    topK: s.topK ?? 0,
    topP: s.topP ?? 1,
    repetitionPenalty: s.repetitionPenalty ?? 1,
    doSample: s.doSample ?? temperature > 0,
    seed: BigInt(s.seed ?? 0),
  })
}

function fromWireSampling(s: Sampling | undefined): SamplingParams {
  return { temperature: s?.temperature ?? 0, topK: s?.topK ?? 0, topP: s?.topP || 1, repetitionPenalty: s?.repetitionPenalty || 1, doSample: s?.doSample ?? false, seed: Number(s?.seed ?? 0n) }
}

const frame = (kind: NonNullable<MessageInitShape<typeof FrameSchema>['kind']>) => create(FrameSchema, { kind })

/** A session id no other peer can guess (another origin's id never collides with it on a shared hop). */
function newSessionId(self: string): string {
  const bytes = crypto.getRandomValues(new Uint8Array(16))
  return `${self.slice(-8)}-${Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('')}`
}

type OpenSession = Extract<Frame['kind'], { case: 'open' }>['value']

/** An origin's session waiting for tokens: only its planned last hop may send them. */
type WaitingSession = { lastHop: string; push(f: Frame): void }

/** Longest session id taken from a peer. */
const MAX_SESSION_ID = 128
/** Most hops an open frame may name after its receiver. */
const MAX_HOPS = 64

/** A served session's key: the peer that opened it and the id it gave. */
const sessionKey = (remote: string, sessionId: string) => `${remote}/${sessionId}`

/** Where a served session goes on: its next hop (or its origin, from the last hop), and its origin's peer id. */
type SessionRoute = { next: DialPlan; origin: string }

/**
 * The peers a shard dials for a session, from an open frame received from `remote`. The next hop
 * is dialled by its peer id, with its addresses as hints only when each is a `/p2p/<that peer>`
 * address (UnplannedAddressError otherwise). The origin is a peer id, never an address: on the
 * first shard (layers from 0) it is the peer that opened the stream; further on, the one the
 * previous hop passed on. The last shard reaches it over the connection the origin opened to it.
 */
function sessionRoute(open: OpenSession, firstShard: boolean, remote: string): SessionRoute {
  if (!open.sessionId || open.sessionId.length > MAX_SESSION_ID) throw new MalformedFrameError(`session id of ${open.sessionId.length} characters (1 to ${MAX_SESSION_ID})`)
  if (open.next.length > MAX_HOPS) throw new MalformedFrameError(`${open.next.length} hops (at most ${MAX_HOPS})`)
  // Every hop is checked here, so a bad one further on is refused before any work is done.
  const hops = open.next.map((h) => planDial(h))
  const origin = firstShard ? remote : open.origin?.peerId
  if (!origin) throw new UnplannedAddressError('open frame has no origin')
  const originPlan = planDial({ peerId: origin, multiaddrs: [] })
  return { next: hops[0] ?? originPlan, origin }
}

/**
 * The forward protocol on one peer: serves its shard to sessions (chain push: run the layers,
 * push the hidden state to the next hop, or sample and send the token straight to the origin),
 * and, as an origin, runs generations over routes of peers with failover.
 */
export function createForwardService(init: ForwardServiceInit) {
  const { node } = init
  /** The shard new sessions are served by (swapped by setShard when the oracle reassigns). */
  let current = init.shard
  const logger = init.logger ?? silentLogger
  const maxFrame = init.maxFrameBytes ?? 8 << 20
  const wireDtype = init.wireDtype ?? 'float16'
  const timeoutMs = init.stepTimeoutMs ?? 30_000
  const idleMs = init.sessionIdleMs ?? 120_000
  const self = node.peerId.toString()
  const lpOpts = { maxDataLength: maxFrame, maxBufferSize: maxFrame + 1024 }
  /** Origin side: sessions waiting for tokens, with the hops they may come from. */
  const waiting = new Map<string, WaitingSession>()
  let handlerInstalled = false
  /**
   * Sessions being served, by (remote peer, session id): to tell their origins when this peer
   * stops, and which shard serves each. Another peer naming the same session id is another session.
   */
  const active = new Map<string, { up: Lp; sessionId: string }>()
  const activeShard = new Map<string, ShardSession>()
  const sessionsPerPeer = createPeerLimit(init.maxSessionsPerPeer ?? 128)
  const streamsPerPeer = createPeerLimit(init.maxStreamsPerPeer ?? 256)
  /** Work this peer's shard did, cumulative since start (what metrics reports are made of). */
  const served: ForwardServiceStats = { processedTokens: 0, sessions: 0, steps: 0, computeMs: 0 }
  /** Steps waiting for the shard (reported to origins) and this origin's sessions per peer (routes spread by load). */
  const load = createShardLoad()

  /**
   * A stream to a peer: dialled by its peer id (Noise checks it is that peer), its `/p2p/<peer>`
   * addresses only hints; an in-memory pair when the peer is this one.
   */
  async function openStream(plan: DialPlan, signal?: AbortSignal): Promise<Lp> {
    if (plan.peerId.toString() === self) {
      const [outbound, inbound] = await streamPair({ delay: 0 })
      void handleStream(inbound, self)
      return lpStream(outbound, lpOpts)
    }
    const stream = await node.dialProtocol(plan.hints.length ? plan.hints : plan.peerId, FORWARD_PROTOCOL, { signal: signal ?? AbortSignal.timeout(timeoutMs) })
    return lpStream(stream, lpOpts)
  }

  /** The origin's dial plan for a peer it learnt of: its addresses made `/p2p/<peer>` ones. */
  const planPeer = (p: { peerId: string; multiaddrs: string[] }): DialPlan => {
    try {
      return planDial({ peerId: p.peerId, multiaddrs: p2pAddresses(p.peerId, p.multiaddrs) })
    } catch (e) {
      // A peer that cannot be dialled is routed around like one that does not answer.
      throw new MeshError(ErrorCode.UNREACHABLE_NEXT_HOP, (e as Error).message, p.peerId)
    }
  }

  const send = (lp: Lp, f: Frame) => lp.write(encodeFrame(f), { signal: AbortSignal.timeout(timeoutMs) })
  const sendError = (lp: Lp, sessionId: string, code: ErrorCode, message: string, peerId = self) =>
    send(lp, frame({ case: 'error', value: { sessionId, code, message, peerId } })).catch(() => undefined)

  async function readFrame(lp: Lp, signal?: AbortSignal): Promise<Frame | null> {
    let bytes
    try {
      bytes = await lp.read({ signal })
    } catch (e) {
      const name = (e as Error).name
      if (name === 'UnexpectedEOFError' || name === 'StreamStateError' || name === 'StreamResetError' || name === 'StreamClosedError') return null
      if (name === 'InvalidDataLengthError' || name === 'InvalidMessageLengthError' || name === 'InvalidDataLengthLengthError') {
        throw new MeshError(ErrorCode.OVERSIZE_FRAME, `frame over the ${maxFrame}-byte limit`)
      }
      throw e
    }
    return decodeFrame(bytes.subarray())
  }

  const close = (lp: Lp | undefined) => {
    if (!lp) return
    lp.unwrap().close().catch(() => lp.unwrap().abort(new Error('close failed')))
  }

  /**
   * One inbound stream from `remote` (the peer Noise authenticated): a session opened by the
   * previous hop (or the origin), or tokens for a session this peer originated. Nothing thrown
   * here escapes: it becomes an error frame and a log line.
   */
  async function handleStream(stream: Stream, remote: string): Promise<void> {
    const lp = lpStream(stream, lpOpts)
    const release = streamsPerPeer.acquire(remote)
    try {
      if (!release) {
        logger.warn({ remote, max: streamsPerPeer.max }, 'refused a stream: too many open streams from this peer')
        await sendError(lp, '', ErrorCode.OVERLOADED, `too many open streams from this peer (at most ${streamsPerPeer.max})`)
        return
      }
      let first: Frame | null
      try {
        first = await readFrame(lp, AbortSignal.timeout(timeoutMs))
      } catch (e) {
        const code = e instanceof MeshError ? e.code : ErrorCode.MALFORMED_FRAME
        logger.warn({ remote, err: (e as Error).message }, 'refused a stream: bad first frame')
        await sendError(lp, '', code, (e as Error).message)
        return
      }
      if (!first) return
      if (first.kind.case === 'token' || first.kind.case === 'error') return await receiveTokens(lp, first, remote)
      if (first.kind.case !== 'open') {
        logger.warn({ remote, kind: first.kind.case }, 'refused a stream: it must start with open or token')
        await sendError(lp, '', ErrorCode.MALFORMED_FRAME, `a stream must start with an open frame, got ${first.kind.case}`)
        return
      }
      await serveSession(lp, first.kind.value, remote)
    } catch (e) {
      logger.error({ remote, err: (e as Error).message }, 'forward stream handler failed')
      await sendError(lp, '', ErrorCode.INTERNAL, 'internal error')
    } finally {
      release?.()
      close(lp)
    }
  }

  /**
   * Origin: token (and error) frames from the last shard of a route. Only the session's planned
   * last hop may send them; frames from any other peer are logged and dropped.
   */
  async function receiveTokens(lp: Lp, first: Frame, remote: string): Promise<void> {
    let f: Frame | null = first
    try {
      while (f) {
        const id = f.kind.case === 'token' || f.kind.case === 'error' ? f.kind.value.sessionId : ''
        const target = waiting.get(id)
        if (!target) logger.debug({ sessionId: id }, 'token for a session no longer waiting')
        else if (remote !== target.lastHop) logger.warn({ sessionId: id, remote, lastHop: target.lastHop, kind: f.kind.case }, 'dropped a frame from a peer that is not the session\'s last hop')
        else if (f.kind.case === 'error') target.push(withPlausibleBlame(f, [remote, self], remote))
        else target.push(f)
        f = await readFrame(lp)
      }
    } catch (e) {
      logger.warn({ remote, err: (e as Error).message }, 'bad frame on a token stream')
    }
  }

  /**
   * An error frame whose blame is kept only when it names one of `plausible` (the reporting hop
   * and the peers after it); any other blame goes to `reporter`, the peer whose stream carried it
   * (an honest hop never passes such a blame on), and is logged.
   */
  function withPlausibleBlame(f: Frame, plausible: readonly string[], reporter: string): Frame {
    if (f.kind.case !== 'error') return f
    const blamed = f.kind.value.peerId
    if (!blamed || plausible.includes(blamed)) return f
    logger.warn({ sessionId: f.kind.value.sessionId, blamed, reporter }, 'an error blamed a peer outside its reporter\'s part of the route; blaming the reporter')
    return frame({ case: 'error', value: { ...f.kind.value, peerId: reporter } })
  }

  /** Shard side: run one session's frames until it closes. */
  async function serveSession(up: Lp, open: OpenSession, remote: string): Promise<void> {
    const sessionId = open.sessionId
    // The cache and the live-session maps know a session by who opened it: another peer naming
    // the same id reaches a different session (or none), never this one.
    const key = sessionKey(remote, sessionId)
    const log = { sessionId, remote, peer: self }
    const fail = async (code: ErrorCode, message: string, culprit = self) => {
      logger.warn({ ...log, code: ErrorCode[code], message, culprit }, 'session failed')
      await sendError(up, sessionId, code, message, culprit)
    }
    // A session stays on the shard it opened on, even when a reassignment swaps in another.
    const shard = current
    if (!shard) return void (await fail(ErrorCode.WRONG_RANGE, 'this peer serves no layers'), close(up))
    if (open.model !== init.model) return void (await fail(ErrorCode.WRONG_MODEL, `this peer serves "${init.model}", not "${open.model}"`), close(up))
    if (open.range?.start !== shard.range.start || open.range?.end !== shard.range.end) {
      return void (await fail(ErrorCode.WRONG_RANGE, `this peer serves layers [${shard.range.start}, ${shard.range.end}), not [${open.range?.start}, ${open.range?.end})`), close(up))
    }
    const isLast = open.next.length === 0
    if (isLast !== (shard.range.end === shard.spec.numLayers)) {
      return void (await fail(ErrorCode.WRONG_RANGE, isLast ? 'the route ends before the last layer' : 'the route goes on past the last layer'), close(up))
    }
    let route: SessionRoute
    try {
      route = sessionRoute(open, shard.range.start === 0, remote)
    } catch (e) {
      return void (await fail(ErrorCode.MALFORMED_FRAME, (e as Error).message), close(up))
    }
    if (active.has(key) || activeShard.has(key)) return void (await fail(ErrorCode.MALFORMED_FRAME, `session "${sessionId}" is already open on this stream's peer`), close(up))
    const releaseSession = sessionsPerPeer.acquire(remote)
    if (!releaseSession) return void (await fail(ErrorCode.OVERLOADED, `too many open sessions from this peer (at most ${sessionsPerPeer.max})`), close(up))
    const sampling = fromWireSampling(open.sampling)
    const eos = new Set(open.eosTokenIds)
    let generated: number[] = []
    let down: Lp | undefined
    // The next hop (shards pass errors from it back up), or the origin (the last shard sends it tokens).
    const next = route.next
    const nextPeer = next.peerId.toString()
    /** A failure to reach the next hop is that hop's fault, not this one's. */
    const sendDown = (f: Frame) =>
      send(down!, f).catch((e: Error) => {
        throw new MeshError(ErrorCode.UNREACHABLE_NEXT_HOP, `cannot reach the next hop: ${e.message}`, nextPeer)
      })
    // Counted on its shard from here: a swap while the next hop is dialled waits for this session too.
    activeShard.set(key, shard)
    try {
      down = await openStream(next)
      if (!isLast) {
        // The origin travels as a peer id only: no hop ever dials an address it was not planned with.
        await sendDown(frame({ case: 'open', value: { ...open, range: open.next[0]!.range, next: open.next.slice(1), origin: create(HopSchema, { peerId: route.origin, multiaddrs: [] }) } }))
        void relayErrors(down, up, nextPeer, [...open.next.slice(1).map((h) => h.peerId), route.origin], sessionId, () => active.has(key))
      }
    } catch (e) {
      activeShard.delete(key)
      releaseSession()
      await fail(ErrorCode.UNREACHABLE_NEXT_HOP, `cannot reach the next hop: ${(e as Error).message}`, nextPeer)
      return close(up)
    }

    active.set(key, { up, sessionId })
    served.sessions++
    try {
      for (;;) {
        const f = await readFrame(up, AbortSignal.timeout(idleMs)).catch((e: Error) => {
          if (e.name === 'TimeoutError' || e.name === 'AbortError') throw new MeshError(ErrorCode.TIMEOUT, `session idle for ${idleMs} ms`)
          throw e
        })
        if (!f || f.kind.case === 'close') {
          if (!isLast) await sendDown(frame({ case: 'close', value: { sessionId, reason: f?.kind.case === 'close' ? f.kind.value.reason : 'upstream closed' } })).catch(() => undefined)
          break
        }
        if (f.kind.case !== 'forward') throw new MeshError(ErrorCode.MALFORMED_FRAME, `unexpected ${f.kind.case} frame in a session`)
        const fw = f.kind.value
        if (fw.sessionId !== sessionId) throw new MeshError(ErrorCode.UNKNOWN_SESSION, `frame for session "${fw.sessionId}" on the stream of "${sessionId}"`)
        const t0 = performance.now()
        const start = fw.step === 0n && fw.chunkIndex === 0
        if (!start && shard.cachedLength(key) !== fw.positionOffset) {
          throw new MeshError(ErrorCode.UNKNOWN_SESSION, `position offset ${fw.positionOffset} does not follow the cached ${shard.cachedLength(key)} positions`)
        }
        if (fw.chunkCount > 1 && fw.chunkIndex >= fw.chunkCount) throw new MeshError(ErrorCode.MALFORMED_FRAME, `chunk ${fw.chunkIndex} of ${fw.chunkCount}`)
        if (start && fw.positionOffset !== 0) throw new MeshError(ErrorCode.MALFORMED_FRAME, 'a session starts at position 0')
        if (start) generated = [...fw.generated]
        const input =
          fw.input.case === 'tokens'
            ? { tokens: fw.input.value.ids }
            : { hidden: decodeHidden(fw.input.case === 'hidden' ? fw.input.value : undefined, init.hiddenSize) }
        // Counted before the call: a shard in a worker may take the input's buffer (transferred, not copied).
        const positions = input.tokens ? input.tokens.length : input.hidden!.length / init.hiddenSize
        const out = await load.step(shard.forward(key, input, { reset: start, owner: remote }))
        const computeMs = performance.now() - t0
        served.processedTokens += positions
        served.steps++
        served.computeMs += computeMs
        const timings = [...fw.timings, create(HopTimingSchema, { peerId: self, computeMs, totalMs: 0 })]
        const lastChunk = fw.chunkCount <= 1 || fw.chunkIndex === fw.chunkCount - 1
        if (!isLast) {
          timings.at(-1)!.totalMs = performance.now() - t0
          await forwardHidden(sendDown, { ...fw, timings }, out.hidden!)
        } else if (lastChunk) {
          const V = shard.spec.vocabSize
          const row = out.logits!.subarray(out.logits!.length - V)
          const id = sampleToken(row, sampling, generated, createRng(stepSeed(sampling.seed ?? 0, Number(fw.step))))
          generated.push(id)
          timings.at(-1)!.totalMs = performance.now() - t0
          await sendDown(frame({ case: 'token', value: { sessionId, step: fw.step, id, isEos: eos.has(id), timings } }))
        }
      }
    } catch (e) {
      const err = e as Error
      const code =
        e instanceof MeshError ? e.code
        : e instanceof MalformedFrameError ? ErrorCode.MALFORMED_FRAME
        : e instanceof BadTensorError || err.name === 'ShardInputError' ? ErrorCode.BAD_TENSOR
        : e instanceof UnknownSessionError ? ErrorCode.UNKNOWN_SESSION
        : ErrorCode.INTERNAL
      // The shard's message would name its internal session key.
      const message = e instanceof UnknownSessionError ? `session "${sessionId}" is not cached on this shard: start it over` : err.message
      await fail(code, message, e instanceof MeshError && e.peerId ? e.peerId : self)
    } finally {
      active.delete(key)
      activeShard.delete(key)
      releaseSession()
      shard.drop(key)
      close(down)
      close(up)
    }
  }

  /** Sends a hidden state on, cut along the sequence when it would not fit one frame. */
  async function forwardHidden(sendDown: (f: Frame) => Promise<void>, fw: Forward, hidden: Float32Array): Promise<void> {
    const H = init.hiddenSize
    const rows = hidden.length / H
    const bytesPerRow = H * (wireDtype === 'float32' ? 4 : 2)
    const perChunk = Math.max(1, Math.floor((maxFrame - 4096) / bytesPerRow))
    // An incoming chunk stays one chunk; a whole prefill is cut here.
    if (fw.chunkCount > 1 || rows <= perChunk) {
      return sendDown(frame({ case: 'forward', value: { ...fw, input: { case: 'hidden', value: encodeHidden(hidden, H, wireDtype) } } }))
    }
    const count = Math.ceil(rows / perChunk)
    for (let i = 0; i < count; i++) {
      const part = hidden.subarray(i * perChunk * H, Math.min(rows, (i + 1) * perChunk) * H)
      await sendDown(frame({ case: 'forward', value: { ...fw, positionOffset: fw.positionOffset + i * perChunk, chunkIndex: i, chunkCount: count, input: { case: 'hidden', value: encodeHidden(part, H, wireDtype) } } }))
    }
  }

  /**
   * Errors from further down a route go back up, so they reach the origin; a downstream that ends
   * while the session is live means the next hop failed.
   */
  async function relayErrors(down: Lp, up: Lp, nextPeer: string, after: string[], sessionId: string, live: () => boolean): Promise<void> {
    try {
      for (;;) {
        const f = await readFrame(down)
        if (!f) break
        if (f.kind.case === 'error') {
          // The next hop may blame itself or a peer after it on the route, nobody else.
          const relayed = withPlausibleBlame(frame({ case: 'error', value: { ...f.kind.value, sessionId } }), [nextPeer, ...after], nextPeer)
          await send(up, relayed)
          close(up)
          return
        }
      }
    } catch {
      // fall through: the stream broke
    }
    if (live()) {
      await sendError(up, sessionId, ErrorCode.UNREACHABLE_NEXT_HOP, 'the next hop went away', nextPeer)
      close(up)
    }
  }

  /** The hops of a route that do not answer a dial within 2 s. */
  async function unreachable(route: PeerShard[]): Promise<string[]> {
    const dead = await Promise.all(
      route.map(async (p) => {
        if (p.peerId === self) return null
        try {
          const plan = planPeer(p)
          const stream = await node.dialProtocol(plan.hints.length ? plan.hints : plan.peerId, FORWARD_PROTOCOL, { signal: AbortSignal.timeout(2000) })
          await stream.close()
          return null
        } catch {
          return p.peerId
        }
      }),
    )
    return dead.filter((d): d is string => d !== null)
  }

  /** Origin: a connection to the route's last hop, so it can send tokens back without dialling an address. */
  async function connectLastHop(route: PeerShard[], signal?: AbortSignal): Promise<void> {
    const last = route.at(-1)!
    if (route.length < 2 || last.peerId === self) return
    const plan = planPeer(last)
    try {
      await node.dial(plan.hints.length ? plan.hints : plan.peerId, { signal: signal ?? AbortSignal.timeout(timeoutMs) })
    } catch (e) {
      throw new MeshError(ErrorCode.UNREACHABLE_NEXT_HOP, `cannot reach the last hop: ${(e as Error).message}`, last.peerId)
    }
  }

  /** Origin: one generation over a route, re-planned and replayed after a failure. */
  async function generate(params: MeshGenerateParameters): Promise<MeshGenerateResult> {
    const excluded = new Set<string>()
    const routes: string[][] = []
    const out: number[] = []
    let failovers = 0
    let prefillMs = 0
    let decodeStart = 0
    let finishReason: GenerateResult['finishReason'] = 'length'
    const maxFailovers = params.maxFailovers ?? 3
    const t0 = performance.now()

    const routable = () => {
      try {
        planRoute(params.peers(), params.numLayers, excluded)
        return true
      } catch {
        return false
      }
    }
    for (;;) {
      if (params.waitForRoute && !routable()) await params.waitForRoute(routable)
      const route = planRoute(load.weigh(params.peers()), params.numLayers, excluded)
      const leave = load.enter(route)
      routes.push(route.map((p) => p.peerId))
      const sessionId = newSessionId(self)
      const inbox: Frame[] = []
      let wake: (() => void) | null = null
      const routeIds = route.map((p) => p.peerId)
      waiting.set(sessionId, { lastHop: routeIds.at(-1)!, push: (f) => (inbox.push(f), wake?.()) })
      let first: Lp | undefined
      try {
        // The last hop sends tokens over a connection this origin opened to it (hops dial no origin addresses).
        ;[first] = await Promise.all([openStream(planPeer(route[0]!), params.signal), connectLastHop(route, params.signal)])
        const hop = (p: PeerShard): Hop => create(HopSchema, { peerId: p.peerId, multiaddrs: p2pAddresses(p.peerId, p.multiaddrs), range: { start: p.start, end: p.end } })
        const originHop = create(HopSchema, { peerId: self, multiaddrs: [] })
        await send(first, frame({ case: 'open', value: { sessionId, model: init.model, range: { start: route[0]!.start, end: route[0]!.end }, next: route.slice(1).map(hop), origin: originHop, sampling: toWireSampling(params.sampling), eosTokenIds: params.eosTokenIds ?? [] } }))
        const upstream = first
        void (async () => {
          // Errors bubble back up the chain to the first hop's stream; its end mid-session is the first hop failing.
          try {
            for (;;) {
              const f = await readFrame(upstream)
              if (!f) break
              // The first hop may blame itself or any peer after it; it relays the others' errors.
              if (f.kind.case === 'error') return waiting.get(sessionId)?.push(withPlausibleBlame(f, [...routeIds, self], routeIds[0]!))
            }
          } catch {
            // fall through
          }
          waiting.get(sessionId)?.push(frame({ case: 'error', value: { sessionId, code: ErrorCode.UNREACHABLE_NEXT_HOP, message: 'the first hop went away', peerId: route[0]!.peerId } }))
        })()
        const nextToken = async (): Promise<{ id: number; isEos: boolean; timings: HopTimingMs[] }> => {
          const deadline = AbortSignal.any([AbortSignal.timeout(timeoutMs), ...(params.signal ? [params.signal] : [])])
          while (inbox.length === 0) {
            await new Promise<void>((resolve, reject) => {
              wake = resolve
              deadline.addEventListener('abort', () => reject(params.signal?.aborted ? params.signal.reason : new MeshError(ErrorCode.TIMEOUT, `no token within ${timeoutMs} ms`)), { once: true })
            })
          }
          const f = inbox.shift()!
          if (f.kind.case === 'error') throw new MeshError(f.kind.value.code, f.kind.value.message, f.kind.value.peerId)
          if (f.kind.case !== 'token') throw new MeshError(ErrorCode.MALFORMED_FRAME, `unexpected ${f.kind.case} frame for a session`)
          return { id: f.kind.value.id, isEos: f.kind.value.isEos, timings: f.kind.value.timings.map((t) => ({ peerId: t.peerId, computeMs: t.computeMs, totalMs: t.totalMs })) }
        }
        // Prefill (or replay: the prompt and the tokens generated so far), then one token per step.
        const history = [...params.inputIds, ...out]
        await send(first, frame({ case: 'forward', value: { sessionId, step: 0n, positionOffset: 0, input: { case: 'tokens', value: { ids: history } }, generated: out } }))
        let position = history.length
        let step = 0
        for (;;) {
          const token = await nextToken()
          if (out.length === 0) {
            prefillMs = performance.now() - t0
            decodeStart = performance.now()
          }
          out.push(token.id)
          const stop = params.onToken?.(token.id, out.length - 1, token.timings) === 'stop'
          if (stop) finishReason = 'stop'
          else if (token.isEos) finishReason = 'eos'
          if (stop || token.isEos || out.length >= params.maxNewTokens) break
          step++
          await send(first, frame({ case: 'forward', value: { sessionId, step: BigInt(step), positionOffset: position, input: { case: 'tokens', value: { ids: [token.id] } } } }))
          position++
        }
        await send(first, frame({ case: 'close', value: { sessionId, reason: 'done' } })).catch(() => undefined)
        close(first)
        waiting.delete(sessionId)
        const decodeSteps = Math.max(0, out.length - 1)
        return { outputIds: out, finishReason, prefillMs, decodeMsPerToken: decodeSteps ? (performance.now() - decodeStart) / decodeSteps : 0, routes, failovers }
      } catch (e) {
        waiting.delete(sessionId)
        close(first)
        if (params.signal?.aborted) throw e
        const err = e as MeshError
        // Route around the failed peer; after a timeout, around the hops that no longer answer.
        const failed = err.peerId ? [err.peerId] : await unreachable(route)
        if (failovers >= maxFailovers) throw e
        logger.warn({ sessionId, failed, err: err.message, tokens: out.length }, 'route failed; re-planning and replaying')
        for (const f of failed) excluded.add(f)
        failovers++
        await params.beforeReplan?.().catch(() => undefined)
      } finally {
        leave()
      }
    }
  }

  return {
    async start(): Promise<void> {
      await node.handle(
        FORWARD_PROTOCOL,
        (stream, connection) => handleStream(stream, connection.remotePeer.toString()).catch((e: Error) => logger.error({ err: e.message }, 'forward stream handler failed')),
        { maxInboundStreams: 256, maxOutboundStreams: 1024 },
      )
      handlerInstalled = true
    },
    /** Stops serving: every open session's origin is told, so it re-plans at once. */
    async stop(): Promise<void> {
      if (handlerInstalled) await node.unhandle(FORWARD_PROTOCOL)
      await Promise.all([...active.values()].map(({ up, sessionId }) => sendError(up, sessionId, ErrorCode.SHUTTING_DOWN, 'peer is shutting down').then(() => close(up))))
    },
    /** Sessions being served now. */
    activeSessions: () => active.size,
    /** This peer's load as the info protocol reports it. */
    load: () => load.report(active.size),
    /** What this peer's shard has served since start. */
    stats: (): ForwardServiceStats => ({ ...served }),
    /** The shard served now. */
    shard: () => current,
    /**
     * Serves new sessions with `next` (undefined: none). Sessions open on the previous shard finish
     * there; those still open after `graceMs` are told this peer stopped serving them, so their
     * origins re-plan. Resolves when the previous shard serves nothing (the caller disposes it).
     */
    async setShard(next: ShardSession | undefined, graceMs = 30_000): Promise<void> {
      const old = current
      current = next
      if (!old || old === next) return
      const onOld = () => [...activeShard].filter(([, s]) => s === old).map(([id]) => id)
      const deadline = Date.now() + graceMs
      while (onOld().length && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50))
      await Promise.all(
        onOld().map((key) => {
          const session = active.get(key)
          return session ? sendError(session.up, session.sessionId, ErrorCode.SHUTTING_DOWN, 'this peer was reassigned another layer range').then(() => close(session.up)) : undefined
        }),
      )
    },
    generate,
  }
}

export type ForwardService = ReturnType<typeof createForwardService>
