import { create } from '@bufbuild/protobuf'
import type { StepLog } from '../verify/stepLog.ts'
import type { Stream } from '@libp2p/interface'
import { lpStream } from '@libp2p/utils'
import { ErrorCode, HopSchema, HopTimingSchema, type Forward, type Frame } from '../../proto/gen/mesh_pb.js'
import { createRng, sampleToken } from '../engine/sampling.ts'
import { ShardInputError, UnknownSessionError, type ShardSession } from '../engine/shardSession.ts'
import type { Logger } from '../logger.ts'
import { BadTensorError, MalformedFrameError, decodeHidden, encodeHidden, type WireDtype } from './frames.ts'
import { UnplannedAddressError, planDial, type DialPlan } from './peerAddress.ts'
import { createPeerLimit } from './peerLimits.ts'
import { MeshError, frame, fromWireSampling, stepSeed, type ForwardStreams, type Lp } from './forwardStreams.ts'
import type { ShardLoad } from './shardLoad.ts'
import { withTimeout } from './waitDeadline.ts'

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

type OpenSession = Extract<Frame['kind'], { case: 'open' }>['value']

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

export type ForwardServerInit = {
  /** Model name on the wire. */
  model: string
  /** Hidden size of the model (to validate tensors). */
  hiddenSize: number
  /** The shard new sessions are served by at first. */
  shard?: ShardSession
  logger: Logger
  maxFrameBytes: number
  wireDtype: WireDtype
  timeoutMs: number
  idleMs: number
  maxSessionsPerPeer: number
  maxStreamsPerPeer: number
  /** Token and error frames opening a stream: for the origin side. */
  receiveTokens(lp: Lp, first: Frame, remote: string): Promise<void>
  /** Counts the steps waiting for the shard (reported as load). */
  load?: ShardLoad
  /** Spot checks: commits to every served step and keeps it auditable (shared/verify). */
  stepLog?: StepLog
}

/**
 * The forward protocol's serving side: each inbound stream is a session on this peer's shard
 * (chain push: run the layers, push the hidden state to the next hop, or sample and send the
 * token straight to the origin), or tokens for the origin side.
 */
export function createForwardServer(init: ForwardServerInit, io: ForwardStreams) {
  const { logger, receiveTokens } = init
  const { self, lpOpts, openStream, send, sendError, readFrame, close, withPlausibleBlame } = io
  /** The shard new sessions are served by (swapped by setShard when the oracle reassigns). */
  let current = init.shard
  const maxFrame = init.maxFrameBytes
  const wireDtype = init.wireDtype
  const timeoutMs = init.timeoutMs
  const idleMs = init.idleMs
  /**
   * Sessions being served, by (remote peer, session id): to tell their origins when this peer
   * stops, and which shard serves each. Another peer naming the same session id is another session.
   */
  const active = new Map<string, { up: Lp; sessionId: string }>()
  const activeShard = new Map<string, ShardSession>()
  const sessionsPerPeer = createPeerLimit(init.maxSessionsPerPeer)
  const streamsPerPeer = createPeerLimit(init.maxStreamsPerPeer)
  /** Work this peer's shard did, cumulative since start (what metrics reports are made of). */
  const served: ForwardServiceStats = { processedTokens: 0, sessions: 0, steps: 0, computeMs: 0 }
  /** Told when a served session ends (its work is then in `served`): a host reports it soon. */
  const endListeners = new Set<() => void>()

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
        first = await withTimeout(timeoutMs, (signal) => readFrame(lp, signal))
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
      const t0 = performance.now()
      down = await openStream(next)
      logger.debug({ sessionId, next: nextPeer, ms: Math.round(performance.now() - t0) }, 'next hop stream open')
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
        const f = await withTimeout(idleMs, (signal) => readFrame(up, signal)).catch((e: Error) => {
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
        const run = shard.forward(key, input, { reset: start, owner: remote })
        // The commitment's input half is hashed now (beside the compute where the shard runs in a worker).
        const commitment = init.stepLog?.begin({ origin: route.origin, sessionId, range: shard.range, step: fw.step, chunkIndex: fw.chunkIndex, input: fw.input, start })
        const out = await (init.load ? init.load.step(run) : run)
        const computeMs = performance.now() - t0
        served.processedTokens += positions
        served.steps++
        served.computeMs += computeMs
        const commit = commitment?.commit(out)
        const timings = [...fw.timings, create(HopTimingSchema, { peerId: self, computeMs, totalMs: 0, ...commit })]
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
        : e instanceof BadTensorError || e instanceof ShardInputError ? ErrorCode.BAD_TENSOR
        : e instanceof UnknownSessionError ? ErrorCode.UNKNOWN_SESSION
        : ErrorCode.INTERNAL
      // The shard's message would name its internal session key.
      const message = e instanceof UnknownSessionError ? `session "${sessionId}" is not cached on this shard: start it over` : err.message
      await fail(code, message, e instanceof MeshError && e.peerId ? e.peerId : self)
    } finally {
      init.stepLog?.closed(route.origin, sessionId)
      active.delete(key)
      activeShard.delete(key)
      releaseSession()
      shard.drop(key)
      close(down)
      close(up)
      for (const l of endListeners) l()
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

  return {
    handleStream,
    /** Stops serving: every open session's origin is told, so it re-plans at once. */
    async stop(): Promise<void> {
      await Promise.all([...active.values()].map(({ up, sessionId }) => sendError(up, sessionId, ErrorCode.SHUTTING_DOWN, 'peer is shutting down').then(() => close(up))))
    },
    /** Sessions being served now. */
    activeSessions: () => active.size,
    /** What this peer's shard has served since start. */
    stats: (): ForwardServiceStats => ({ ...served }),
    /** Calls `listener` each time a served session ends; returns the unsubscribe. */
    onSessionEnd(listener: () => void): () => void {
      endListeners.add(listener)
      return () => void endListeners.delete(listener)
    },
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
  }
}

export type ForwardServer = ReturnType<typeof createForwardServer>
