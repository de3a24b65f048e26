import { create } from '@bufbuild/protobuf'
import type { SpotChecker } from '../verify/spotChecker.ts'
import { ErrorCode, HopSchema, type Frame, type Hop } from '../../proto/gen/mesh_pb.js'
import type { GenerateResult } from '../engine/generate.ts'
import { createGenerationClock, runGenerationLoop } from '../engine/generationLoop.ts'
import type { SamplingParams } from '../engine/sampling.ts'
import type { Logger } from '../logger.ts'
import { FORWARD_PROTOCOL } from './frames.ts'
import { MeshError, frame, newSessionId, toWireSampling, type ForwardStreams, type Lp, type MeshNode } from './forwardStreams.ts'
import { p2pAddresses, planDial, type DialPlan } from './peerAddress.ts'
import { planRoute, type PeerShard } from './planRoute.ts'
import { openDirectStream } from './openDirectStream.ts'
import { createWaitDeadline } from './waitDeadline.ts'
import { createRouteExclusions } from './routeExclusions.ts'
import type { ShardLoad } from './shardLoad.ts'

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
  /** Whether a peer this generation routed around since `excludedAt` is back; see createRouteExclusions. */
  readmit?: (peerId: string, excludedAt: number) => boolean
}

/** One hop's share of a step, as the token frame reports it. */
export type HopTimingMs = { peerId: string; computeMs: number; totalMs: number; commitment?: Uint8Array }

/** A token as the route's last hop sent it. */
type MeshToken = { id: number; isEos: boolean; timings: HopTimingMs[] }

export type MeshGenerateResult = GenerateResult & {
  /** Routes used, in order (more than one after a failover). */
  routes: string[][]
  failovers: number
}

/** An origin's session waiting for tokens: only its planned last hop may send them. */
type WaitingSession = { lastHop: string; push(f: Frame): void }

export type ForwardOriginInit = {
  node: MeshNode
  /** Model name on the wire. */
  model: string
  logger: Logger
  /** Longest wait for a token. */
  timeoutMs: number
  /** This origin's open sessions per peer, weighed into route choice (load-aware routes). */
  load?: ShardLoad
  /** Spot checks: samples committed steps and checks them beside the generation (shared/verify). */
  spotChecker?: SpotChecker
}

/** The forward protocol's origin side: generations over routes of peers, re-planned and replayed after a failure. */
export function createForwardOrigin(init: ForwardOriginInit, io: ForwardStreams) {
  const { node, logger } = init
  const { self, openStream, send, readFrame, close, withPlausibleBlame } = io
  const timeoutMs = init.timeoutMs
  /** Sessions waiting for tokens, with the hops they may come from. */
  const waiting = new Map<string, WaitingSession>()

  /** The origin's dial plan for a peer it learnt of: its addresses made `/p2p/<peer>` ones. */
  const planPeer = (p: { peerId: string; multiaddrs: string[] }): DialPlan => {
    try {
      return planDial({ peerId: p.peerId, multiaddrs: p2pAddresses(p.peerId, p.multiaddrs) })
    } catch (e) {
      // A peer that cannot be dialled is routed around like one that does not answer.
      throw new MeshError(ErrorCode.UNREACHABLE_NEXT_HOP, (e as Error).message, p.peerId)
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

  /** The hops of a route that do not answer a dial within 5 s (a fresh WebRTC dial takes seconds on a loaded machine). */
  async function unreachable(route: PeerShard[]): Promise<string[]> {
    const dead = await Promise.all(
      route.map(async (p) => {
        if (p.peerId === self) return null
        try {
          const plan = planPeer(p)
          const stream = await openDirectStream(node, plan, FORWARD_PROTOCOL, { signal: AbortSignal.timeout(5000), logger })
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
    const excluded = createRouteExclusions({ readmit: params.readmit })
    const routes: string[][] = []
    const out: number[] = []
    let failovers = 0
    const maxFailovers = params.maxFailovers ?? 3
    // Prefill and decode times span the replays: the prefill ends at the generation's first token.
    const clock = createGenerationClock()

    const routable = () => {
      try {
        planRoute(params.peers(), params.numLayers, excluded.active(params.peers(), params.numLayers))
        return true
      } catch {
        return false
      }
    }
    for (;;) {
      if (params.waitForRoute && !routable()) await params.waitForRoute(routable)
      const route = planRoute(init.load ? init.load.weigh(params.peers()) : params.peers(), params.numLayers, excluded.active(params.peers(), params.numLayers))
      const leave = init.load?.enter(route) ?? (() => undefined)
      routes.push(route.map((p) => p.peerId))
      const sessionId = newSessionId(self)
      const inbox: Frame[] = []
      let wake: (() => void) | null = null
      const routeIds = route.map((p) => p.peerId)
      waiting.set(sessionId, { lastHop: routeIds.at(-1)!, push: (f) => (inbox.push(f), wake?.()) })
      let first: Lp | undefined
      const t0 = performance.now()
      try {
        // The last hop sends tokens over a connection this origin opened to it (hops dial no origin addresses).
        ;[first] = await Promise.all([openStream(planPeer(route[0]!), params.signal), connectLastHop(route, params.signal)])
        logger.debug({ sessionId, ms: Math.round(performance.now() - t0) }, 'first hop stream open')
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
        const nextToken = async (): Promise<MeshToken> => {
          const deadline = createWaitDeadline(timeoutMs, params.signal, () => new MeshError(ErrorCode.TIMEOUT, `no token within ${timeoutMs} ms`))
          try {
            while (inbox.length === 0) await deadline.wait((w) => (wake = w))
          } finally {
            deadline.dispose()
          }
          const f = inbox.shift()!
          if (f.kind.case === 'error') throw new MeshError(f.kind.value.code, f.kind.value.message, f.kind.value.peerId)
          if (f.kind.case !== 'token') throw new MeshError(ErrorCode.MALFORMED_FRAME, `unexpected ${f.kind.case} frame for a session`)
          return { id: f.kind.value.id, isEos: f.kind.value.isEos, timings: f.kind.value.timings.map((t) => ({ peerId: t.peerId, computeMs: t.computeMs, totalMs: t.totalMs, ...(t.commitment.length ? { commitment: t.commitment } : {}) })) }
        }
        // Prefill (or replay: the prompt and the tokens generated so far), then one token per step;
        // the route's last hop samples each token and says whether it ends the sequence.
        let position = 0
        let step = 0
        const finishReason = await runGenerationLoop({
          inputIds: params.inputIds,
          outputIds: out,
          maxNewTokens: params.maxNewTokens,
          step: async (tokens, prefill) => {
            if (prefill) {
              await send(upstream, frame({ case: 'forward', value: { sessionId, step: 0n, positionOffset: 0, input: { case: 'tokens', value: { ids: tokens } }, generated: out } }))
              position = tokens.length
            } else {
              step++
              await send(upstream, frame({ case: 'forward', value: { sessionId, step: BigInt(step), positionOffset: position, input: { case: 'tokens', value: { ids: tokens } } } }))
              position++
            }
            return nextToken()
          },
          next: (token) => {
            init.spotChecker?.observe(sessionId, step, token.timings, params.peers())
            return token
          },
          onToken: (token, index) => {
            if (index === 0) logger.debug({ sessionId, ms: Math.round(performance.now() - t0) }, 'first token')
            return params.onToken?.(token.id, index, token.timings)
          },
          clock,
        })
        await send(first, frame({ case: 'close', value: { sessionId, reason: 'done' } })).catch(() => undefined)
        close(first)
        waiting.delete(sessionId)
        return { outputIds: out, finishReason, ...clock.timings(out.length), routes, failovers }
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

  return { receiveTokens, generate }
}
