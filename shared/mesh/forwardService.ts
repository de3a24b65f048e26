import { create, type MessageInitShape } from '@bufbuild/protobuf'
import type { Stream } from '@libp2p/interface'
import { lpStream, streamPair, type LengthPrefixedStream } from '@libp2p/utils'
import { multiaddr } from '@multiformats/multiaddr'
import { peerIdFromString } from '@libp2p/peer-id'
import { ErrorCode, FrameSchema, HopSchema, HopTimingSchema, SamplingSchema, type Forward, type Frame, type Hop, type Sampling } from '../../proto/gen/mesh_pb.js'
import type { GenerateResult } from '../engine/generate.ts'
import { createRng, sampleToken, type SamplingParams } from '../engine/sampling.ts'
import { UnknownSessionError, type ShardSession } from '../engine/shardSession.ts'
import { silentLogger, type Logger } from '../logger.ts'
import { BadTensorError, FORWARD_PROTOCOL, MalformedFrameError, decodeFrame, decodeHidden, encodeFrame, encodeHidden, type WireDtype } from './frames.ts'
import { planRoute, type PeerShard } from './planRoute.ts'

/** What the service needs of a libp2p node (browser and Node nodes both fit). */
export type MeshNode = {
  peerId: { toString(): string }
  getMultiaddrs(): Array<{ toString(): string }>
  handle(protocol: string, handler: (stream: Stream) => void | Promise<void>, opts?: { maxInboundStreams?: number; maxOutboundStreams?: number }): Promise<void>
  unhandle(protocol: string): Promise<void>
  dialProtocol(peer: ReturnType<typeof multiaddr>[] | ReturnType<typeof peerIdFromString>, protocol: string, opts?: { signal?: AbortSignal }): Promise<Stream>
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
  onToken?: (id: number, index: number) => void | 'stop'
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
  /** Origin side: sessions waiting for tokens. */
  const waiting = new Map<string, { push(f: Frame): void }>()
  let handlerInstalled = false
  /** Sessions being served, to tell their origins when this peer stops (and which shard serves each). */
  const active = new Map<string, Lp>()
  const activeShard = new Map<string, ShardSession>()
  /** Work this peer's shard did, cumulative since start (what metrics reports are made of). */
  const served: ForwardServiceStats = { processedTokens: 0, sessions: 0, steps: 0, computeMs: 0 }

  /** A stream to a hop: dialled, or an in-memory pair when the hop is this peer. */
  async function openStream(hop: { peerId: string; multiaddrs: string[] }, signal?: AbortSignal): Promise<Lp> {
    if (hop.peerId === self) {
      const [outbound, inbound] = await streamPair({ delay: 0 })
      void handleStream(inbound)
      return lpStream(outbound, lpOpts)
    }
    const target = hop.multiaddrs.length ? hop.multiaddrs.map((a) => multiaddr(a)) : peerIdFromString(hop.peerId)
    const stream = await node.dialProtocol(target, FORWARD_PROTOCOL, { signal: signal ?? AbortSignal.timeout(timeoutMs) })
    return lpStream(stream, lpOpts)
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

  /** One inbound stream: a session opened by the previous hop (or the origin), or tokens for an origin. */
  async function handleStream(stream: Stream): Promise<void> {
    const lp = lpStream(stream, lpOpts)
    let first: Frame | null
    try {
      first = await readFrame(lp, AbortSignal.timeout(timeoutMs))
    } catch (e) {
      const code = e instanceof MeshError ? e.code : ErrorCode.MALFORMED_FRAME
      logger.warn({ err: (e as Error).message }, 'refused a stream: bad first frame')
      await sendError(lp, '', code, (e as Error).message)
      return close(lp)
    }
    if (!first) return close(lp)
    if (first.kind.case === 'token' || first.kind.case === 'error') return receiveTokens(lp, first)
    if (first.kind.case !== 'open') {
      logger.warn({ kind: first.kind.case }, 'refused a stream: it must start with open or token')
      await sendError(lp, '', ErrorCode.MALFORMED_FRAME, `a stream must start with an open frame, got ${first.kind.case}`)
      return close(lp)
    }
    await serveSession(lp, first.kind.value)
  }

  /** Origin: token (and error) frames from the last shard of a route. */
  async function receiveTokens(lp: Lp, first: Frame): Promise<void> {
    let f: Frame | null = first
    try {
      while (f) {
        const id = f.kind.case === 'token' || f.kind.case === 'error' ? f.kind.value.sessionId : ''
        const target = waiting.get(id)
        if (target) target.push(f)
        else logger.debug({ sessionId: id }, 'token for a session no longer waiting')
        f = await readFrame(lp)
      }
    } catch (e) {
      logger.warn({ err: (e as Error).message }, 'bad frame on a token stream')
    }
    close(lp)
  }

  /** Shard side: run one session's frames until it closes. */
  async function serveSession(up: Lp, open: Extract<Frame['kind'], { case: 'open' }>['value']): Promise<void> {
    const sessionId = open.sessionId
    const log = { sessionId, peer: self }
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
    const sampling = fromWireSampling(open.sampling)
    const eos = new Set(open.eosTokenIds)
    let generated: number[] = []
    let down: Lp | undefined
    // The next hop (shards pass errors from it back up), or the origin (the last shard sends it tokens).
    const next = isLast ? open.origin : open.next[0]
    if (!next) return void (await fail(ErrorCode.MALFORMED_FRAME, 'open frame has no origin'), close(up))
    /** A failure to reach the next hop is that hop's fault, not this one's. */
    const sendDown = (f: Frame) =>
      send(down!, f).catch((e: Error) => {
        throw new MeshError(ErrorCode.UNREACHABLE_NEXT_HOP, `cannot reach the next hop: ${e.message}`, next.peerId)
      })
    // Counted on its shard from here: a swap while the next hop is dialled waits for this session too.
    activeShard.set(sessionId, shard)
    try {
      down = await openStream(next)
      if (!isLast) {
        await sendDown(frame({ case: 'open', value: { ...open, range: open.next[0]!.range, next: open.next.slice(1) } }))
        void relayErrors(down, up, next.peerId, sessionId, () => active.has(sessionId))
      }
    } catch (e) {
      activeShard.delete(sessionId)
      await fail(ErrorCode.UNREACHABLE_NEXT_HOP, `cannot reach the next hop: ${(e as Error).message}`, next.peerId)
      return close(up)
    }

    active.set(sessionId, up)
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
        if (!start && shard.cachedLength(sessionId) !== fw.positionOffset) {
          throw new MeshError(ErrorCode.UNKNOWN_SESSION, `position offset ${fw.positionOffset} does not follow the cached ${shard.cachedLength(sessionId)} positions`)
        }
        if (start && fw.positionOffset !== 0) throw new MeshError(ErrorCode.MALFORMED_FRAME, 'a session starts at position 0')
        if (start) generated = [...fw.generated]
        const input =
          fw.input.case === 'tokens'
            ? { tokens: fw.input.value.ids }
            : { hidden: decodeHidden(fw.input.case === 'hidden' ? fw.input.value : undefined, init.hiddenSize) }
        const out = await shard.forward(sessionId, input, { reset: start })
        const computeMs = performance.now() - t0
        served.processedTokens += input.tokens ? input.tokens.length : input.hidden!.length / init.hiddenSize
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
      await fail(code, err.message, e instanceof MeshError && e.peerId ? e.peerId : self)
    } finally {
      active.delete(sessionId)
      activeShard.delete(sessionId)
      shard.drop(sessionId)
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
  async function relayErrors(down: Lp, up: Lp, nextPeer: string, sessionId: string, live: () => boolean): Promise<void> {
    try {
      for (;;) {
        const f = await readFrame(down)
        if (!f) break
        if (f.kind.case === 'error') {
          await send(up, f)
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
          const target = p.multiaddrs.length ? p.multiaddrs.map((a) => multiaddr(a)) : peerIdFromString(p.peerId)
          const stream = await node.dialProtocol(target, FORWARD_PROTOCOL, { signal: AbortSignal.timeout(2000) })
          await stream.close()
          return null
        } catch {
          return p.peerId
        }
      }),
    )
    return dead.filter((d): d is string => d !== null)
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
      const route = planRoute(params.peers(), params.numLayers, excluded)
      routes.push(route.map((p) => p.peerId))
      const sessionId = `${self.slice(-8)}-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 8)}`
      const inbox: Frame[] = []
      let wake: (() => void) | null = null
      waiting.set(sessionId, { push: (f) => (inbox.push(f), wake?.()) })
      let first: Lp | undefined
      try {
        first = await openStream(route[0]!, params.signal)
        const hop = (p: PeerShard): Hop => create(HopSchema, { peerId: p.peerId, multiaddrs: p.multiaddrs, range: { start: p.start, end: p.end } })
        const originHop = create(HopSchema, { peerId: self, multiaddrs: node.getMultiaddrs().map(String) })
        await send(first, frame({ case: 'open', value: { sessionId, model: init.model, range: { start: route[0]!.start, end: route[0]!.end }, next: route.slice(1).map(hop), origin: originHop, sampling: toWireSampling(params.sampling), eosTokenIds: params.eosTokenIds ?? [] } }))
        const upstream = first
        void (async () => {
          // Errors bubble back up the chain to the first hop's stream; its end mid-session is the first hop failing.
          try {
            for (;;) {
              const f = await readFrame(upstream)
              if (!f) break
              if (f.kind.case === 'error') return waiting.get(sessionId)?.push(f)
            }
          } catch {
            // fall through
          }
          waiting.get(sessionId)?.push(frame({ case: 'error', value: { sessionId, code: ErrorCode.UNREACHABLE_NEXT_HOP, message: 'the first hop went away', peerId: route[0]!.peerId } }))
        })()
        const nextToken = async (): Promise<{ id: number; isEos: boolean }> => {
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
          return { id: f.kind.value.id, isEos: f.kind.value.isEos }
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
          const stop = params.onToken?.(token.id, out.length - 1) === 'stop'
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
      }
    }
  }

  return {
    async start(): Promise<void> {
      await node.handle(FORWARD_PROTOCOL, (stream) => handleStream(stream), { maxInboundStreams: 1024, maxOutboundStreams: 1024 })
      handlerInstalled = true
    },
    /** Stops serving: every open session's origin is told, so it re-plans at once. */
    async stop(): Promise<void> {
      if (handlerInstalled) await node.unhandle(FORWARD_PROTOCOL)
      await Promise.all([...active].map(([id, up]) => sendError(up, id, ErrorCode.SHUTTING_DOWN, 'peer is shutting down').then(() => close(up))))
    },
    /** Sessions being served now. */
    activeSessions: () => active.size,
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
        onOld().map((id) => {
          const up = active.get(id)
          return up ? sendError(up, id, ErrorCode.SHUTTING_DOWN, 'this peer was reassigned another layer range').then(() => close(up)) : undefined
        }),
      )
    },
    generate,
  }
}

export type ForwardService = ReturnType<typeof createForwardService>
