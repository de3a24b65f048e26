import { silentLogger } from '../logger.ts'
import type { StepLog } from '../verify/stepLog.ts'
import type { SpotChecker } from '../verify/spotChecker.ts'
import { FORWARD_PROTOCOL } from './frames.ts'
import { createForwardOrigin } from './forwardOrigin.ts'
import { createForwardServer, type ForwardServiceStats } from './forwardServer.ts'
import { createForwardStreams, type MeshNode } from './forwardStreams.ts'
import { createShardLoad } from './shardLoad.ts'
import type { ShardSession } from '../engine/shardSession.ts'
import type { Logger } from '../logger.ts'
import type { WireDtype } from './frames.ts'

export { MeshError, type MeshConnection, type MeshNode } from './forwardStreams.ts'
export type { HopTimingMs, MeshGenerateParameters, MeshGenerateResult } from './forwardOrigin.ts'
export type { ForwardServiceStats } from './forwardServer.ts'

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
  /** Serving side of spot checks: commits to every served step and keeps it auditable (shared/verify). */
  stepLog?: StepLog
  /** Origin side of spot checks: samples committed steps and checks them beside the generation. */
  spotChecker?: SpotChecker
}

/**
 * The forward protocol on one peer: serves its shard to sessions (its serving side,
 * {@link createForwardServer}), and, as an origin, runs generations over routes of peers with
 * failover ({@link createForwardOrigin}).
 */
export function createForwardService(init: ForwardServiceInit) {
  const { node } = init
  const logger = init.logger ?? silentLogger
  const maxFrame = init.maxFrameBytes ?? 8 << 20
  const timeoutMs = init.stepTimeoutMs ?? 30_000
  let handlerInstalled = false
  const io = createForwardStreams({ node, logger, maxFrameBytes: maxFrame, timeoutMs, serveLocal: (stream) => void server.handleStream(stream, io.self) })
  /** Steps waiting for the shard (reported to origins) and this origin's sessions per peer (routes spread by load). */
  const load = createShardLoad()
  const origin = createForwardOrigin({ node, model: init.model, logger, timeoutMs, spotChecker: init.spotChecker, load }, io)
  const server = createForwardServer(
    {
      model: init.model,
      hiddenSize: init.hiddenSize,
      shard: init.shard,
      logger,
      maxFrameBytes: maxFrame,
      wireDtype: init.wireDtype ?? 'float16',
      timeoutMs,
      idleMs: init.sessionIdleMs ?? 120_000,
      maxSessionsPerPeer: init.maxSessionsPerPeer ?? 128,
      maxStreamsPerPeer: init.maxStreamsPerPeer ?? 256,
      receiveTokens: origin.receiveTokens,
      load,
      stepLog: init.stepLog,
    },
    io,
  )

  return {
    async start(): Promise<void> {
      await node.handle(
        FORWARD_PROTOCOL,
        (stream, connection) => server.handleStream(stream, connection.remotePeer.toString()).catch((e: Error) => logger.error({ err: e.message }, 'forward stream handler failed')),
        { maxInboundStreams: 256, maxOutboundStreams: 1024 },
      )
      handlerInstalled = true
    },
    /** Stops serving: every open session's origin is told, so it re-plans at once. */
    async stop(): Promise<void> {
      if (handlerInstalled) await node.unhandle(FORWARD_PROTOCOL)
      await server.stop()
    },
    activeSessions: server.activeSessions,
    /** This peer's load as the info protocol reports it. */
    load: () => load.report(server.activeSessions(), server.shard()?.waitingCalls?.()),
    stats: (): ForwardServiceStats => server.stats(),
    onSessionEnd: server.onSessionEnd,
    shard: server.shard,
    setShard: server.setShard,
    generate: origin.generate,
  }
}

export type ForwardService = ReturnType<typeof createForwardService>
