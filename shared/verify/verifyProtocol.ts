import { create, fromBinary, toBinary } from '@bufbuild/protobuf'
import type { Stream } from '@libp2p/interface'
import { lpStream } from '@libp2p/utils'
import { RecomputeAnswerSchema, VerifyMessageSchema, type AuditAnswer, type RecomputeAnswer, type StepInput, type VerifyMessage } from '../../proto/gen/mesh_pb.js'
import type { ShardSession } from '../engine/shardSession.ts'
import { silentLogger, type Logger } from '../logger.ts'
import type { MeshNode } from '../mesh/forwardService.ts'
import { openDirectStream } from '../mesh/openDirectStream.ts'
import { planDial } from '../mesh/peerAddress.ts'
import { createPeerLimit } from '../mesh/peerLimits.ts'
import { recomputeLastRow } from './recompute.ts'
import type { StepLog } from './stepLog.ts'
import { DEFAULT_WEIGHTS, weightsOf } from './weightFormat.ts'

/** Audits and recomputations (one request and one answer per stream). */
export const VERIFY_PROTOCOL = '/shardmesh/verify/1.0.0'

export class VerifyProtocolError extends Error {
  constructor(message: string) {
    super(message)
    this.name = 'VerifyProtocolError'
  }
}

export type VerifyServiceInit = {
  node: MeshNode
  model: string
  /** The served steps this peer can be audited on. */
  log: StepLog
  /** The shard recomputations run on (the one this peer serves now). */
  shard: () => ShardSession | undefined
  /** The weight format the shard runs: recomputations are taken only in this format. @default 'float32' */
  weights?: string
  /** Largest request taken. @default 16 MiB */
  maxMessageBytes?: number
  logger?: Logger
}

const asBytes = (row: Float32Array) => new Uint8Array(row.buffer.slice(row.byteOffset, row.byteOffset + row.byteLength))

/** Float32 values of a row from the wire (a copy: the decoder's bytes may be unaligned views). */
export function rowFromBytes(bytes: Uint8Array): Float32Array {
  if (bytes.byteLength % 4 !== 0) throw new VerifyProtocolError(`a row of ${bytes.byteLength} bytes is not float32`)
  return new Float32Array(new Uint8Array(bytes).buffer)
}

/**
 * The serving side of /shardmesh/verify: answers its sessions' origins' audits from the step
 * log, and recomputes a session prefix for anyone who asks for the range it serves (one at a time
 * per peer: it is real work, run beside the sessions it serves).
 */
export function createVerifyService(init: VerifyServiceInit) {
  const logger = init.logger ?? silentLogger
  const maxBytes = init.maxMessageBytes ?? 16 << 20
  const ownWeights = weightsOf(init.weights)
  /** Recomputations waiting or running per requesting peer: they run one at a time, at most 16 wait. */
  const perPeer = createPeerLimit(16)
  const turns = new Map<string, Promise<unknown>>()
  /** Runs `f` after the peer's earlier recomputations (one at a time per peer: it is real work beside the served sessions). */
  const inTurn = <T,>(peer: string, f: () => Promise<T>): Promise<T> => {
    const run = (turns.get(peer) ?? Promise.resolve()).then(f, f)
    const tail = run.catch(() => undefined)
    turns.set(peer, tail)
    void tail.then(() => turns.get(peer) === tail && turns.delete(peer))
    return run
  }
  let recomputations = 0
  let recomputeMs = 0

  async function answer(request: VerifyMessage, remote: string): Promise<VerifyMessage> {
    const k = request.kind
    if (k.case === 'audit') {
      return create(VerifyMessageSchema, { kind: { case: 'auditAnswer', value: await init.log.audit(remote, k.value.sessionId, k.value.commitment) } })
    }
    if (k.case === 'recompute') {
      const refuse = (error: string) => create(VerifyMessageSchema, { kind: { case: 'recomputeAnswer', value: create(RecomputeAnswerSchema, { error }) } })
      const shard = init.shard()
      if (k.value.model !== init.model) return refuse(`this peer serves "${init.model}"`)
      if (!shard || shard.range.start !== k.value.range?.start || shard.range.end !== k.value.range?.end) return refuse('this peer does not serve that range')
      // A row in another weight format differs by more than the tolerance: it would accuse an honest hop.
      if (weightsOf(k.value.weights) !== ownWeights) return refuse(`this peer runs ${ownWeights} weights, not ${weightsOf(k.value.weights)}`)
      const release = perPeer.acquire(remote)
      if (!release) return refuse(`too many recomputations for this peer (at most ${perPeer.max} at once)`)
      try {
        const row = await inTurn(remote, async () => {
          const t0 = performance.now()
          const r = await recomputeLastRow(shard, k.value.inputs, remote)
          recomputations++
          recomputeMs += performance.now() - t0
          return r
        })
        return create(VerifyMessageSchema, { kind: { case: 'recomputeAnswer', value: create(RecomputeAnswerSchema, { output: asBytes(row) }) } })
      } catch (e) {
        return refuse((e as Error).message)
      } finally {
        release()
      }
    }
    throw new VerifyProtocolError(`unexpected ${k.case} request`)
  }

  async function handle(stream: Stream, remote: string): Promise<void> {
    const lp = lpStream(stream, { maxDataLength: maxBytes })
    try {
      const request = fromBinary(VerifyMessageSchema, (await lp.read({ signal: AbortSignal.timeout(10_000) })).subarray())
      await lp.write(toBinary(VerifyMessageSchema, await answer(request, remote)))
      await stream.close()
    } catch (e) {
      logger.debug({ remote, err: (e as Error).message }, 'verify request failed')
      stream.abort(e as Error)
    }
  }

  return {
    async start(): Promise<void> {
      await init.node.handle(VERIFY_PROTOCOL, (stream, connection) => handle(stream, connection.remotePeer.toString()), { maxInboundStreams: 64 })
    },
    async stop(): Promise<void> {
      await init.node.unhandle(VERIFY_PROTOCOL)
    },
    /** Recomputations run here for others, and their time. */
    stats: () => ({ recomputations, recomputeMs }),
  }
}

async function ask(node: MeshNode, peer: { peerId: string; multiaddrs: string[] }, request: VerifyMessage, timeoutMs: number, maxBytes: number): Promise<VerifyMessage> {
  let plan
  try {
    plan = planDial(peer)
  } catch {
    plan = planDial({ peerId: peer.peerId, multiaddrs: [] })
  }
  const signal = AbortSignal.timeout(timeoutMs)
  // Recomputations carry hidden states: never over a limited relay circuit.
  const stream = await openDirectStream(node, plan, VERIFY_PROTOCOL, { signal, logger: silentLogger })
  const lp = lpStream(stream, { maxDataLength: maxBytes })
  try {
    await lp.write(toBinary(VerifyMessageSchema, request), { signal })
    return fromBinary(VerifyMessageSchema, (await lp.read({ signal })).subarray())
  } finally {
    await stream.close().catch(() => stream.abort(new Error('closed')))
  }
}

/** Asks a hop for a session's inputs up to a committed step, that step's output row and the signed commitment. */
export async function requestAudit(node: MeshNode, peer: { peerId: string; multiaddrs: string[] }, sessionId: string, commitment: Uint8Array, timeoutMs = 10_000): Promise<AuditAnswer> {
  const a = await ask(node, peer, create(VerifyMessageSchema, { kind: { case: 'audit', value: { sessionId, commitment } } }), timeoutMs, 64 << 20)
  if (a.kind.case !== 'auditAnswer') throw new VerifyProtocolError(`expected an audit answer, got ${a.kind.case}`)
  return a.kind.value
}

/** Asks a peer serving the same range in the same weight format to run the inputs as a fresh session. */
export async function requestRecompute(node: MeshNode, peer: { peerId: string; multiaddrs: string[] }, model: string, range: { start: number; end: number }, inputs: StepInput[], timeoutMs = 30_000, weights: string = DEFAULT_WEIGHTS): Promise<RecomputeAnswer> {
  // float32 is sent as absent: older checkers (all float32) read the same request as before.
  const a = await ask(node, peer, create(VerifyMessageSchema, { kind: { case: 'recompute', value: { model, range, inputs, weights: weights === DEFAULT_WEIGHTS ? '' : weights } } }), timeoutMs, 64 << 20)
  if (a.kind.case !== 'recomputeAnswer') throw new VerifyProtocolError(`expected a recompute answer, got ${a.kind.case}`)
  return a.kind.value
}

