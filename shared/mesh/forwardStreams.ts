import { create, type MessageInitShape } from '@bufbuild/protobuf'
import type { Stream } from '@libp2p/interface'
import { lpStream, streamPair, type LengthPrefixedStream } from '@libp2p/utils'
import type { Multiaddr } from '@multiformats/multiaddr'
import type { PeerId } from '@libp2p/interface'
import { ErrorCode, FrameSchema, SamplingSchema, type Frame, type Sampling } from '../../proto/gen/mesh_pb.js'
import type { SamplingParams } from '../engine/sampling.ts'
import type { Logger } from '../logger.ts'
import { FORWARD_PROTOCOL, decodeFrame, encodeFrame } from './frames.ts'
import { openDirectStream } from './openDirectStream.ts'
import type { DialPlan } from './peerAddress.ts'
import { withTimeout } from './waitDeadline.ts'

/** An open connection to a peer; its remote peer id is the one Noise authenticated. */
export type MeshConnection = {
  remotePeer: { toString(): string }
  /** Set on a limited (relay circuit v2) connection, on which the forward protocol never runs. */
  limits?: object
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
  getConnections(peerId?: PeerId): MeshConnection[]
  addEventListener(type: 'peer:identify', listener: (evt: CustomEvent<{ peerId: { toString(): string }; protocols: string[] }>) => void): void
  removeEventListener(type: 'peer:identify', listener: (evt: CustomEvent<{ peerId: { toString(): string }; protocols: string[] }>) => void): void
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

export type Lp = LengthPrefixedStream<Stream>

/** Per-step sampler seed: a replay through a new route draws the same numbers. */
export const stepSeed = (seed: number, step: number) => (Math.imul(seed >>> 0, 0x9e3779b1) ^ Math.imul(step + 1, 0x85ebca6b)) >>> 0

export function toWireSampling(s: SamplingParams = {}): Sampling {
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

export function fromWireSampling(s: Sampling | undefined): SamplingParams {
  return { temperature: s?.temperature ?? 0, topK: s?.topK ?? 0, topP: s?.topP || 1, repetitionPenalty: s?.repetitionPenalty || 1, doSample: s?.doSample ?? false, seed: Number(s?.seed ?? 0n) }
}

export const frame = (kind: NonNullable<MessageInitShape<typeof FrameSchema>['kind']>) => create(FrameSchema, { kind })

/** A session id no other peer can guess (another origin's id never collides with it on a shared hop). */
export function newSessionId(self: string): string {
  const bytes = crypto.getRandomValues(new Uint8Array(16))
  return `${self.slice(-8)}-${Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('')}`
}

export type ForwardStreamsInit = {
  node: MeshNode
  logger: Logger
  /** Frames above this are refused. */
  maxFrameBytes: number
  /** Longest wait for a frame to be written, or a peer to be dialled. */
  timeoutMs: number
  /** Serves a stream this peer opened to itself (a route through its own shard). */
  serveLocal(stream: Stream): void
}

/** Frames on length-prefixed streams, shared by the serving side and the origin side of the forward protocol. */
export type ForwardStreams = ReturnType<typeof createForwardStreams>

/** The forward protocol's streams and frames on one peer: how both of its sides read, write, dial and close. */
export function createForwardStreams(init: ForwardStreamsInit) {
  const { node, logger } = init
  const maxFrame = init.maxFrameBytes
  const timeoutMs = init.timeoutMs
  const self = node.peerId.toString()
  const lpOpts = { maxDataLength: maxFrame, maxBufferSize: maxFrame + 1024 }

  /**
   * A stream to a peer: dialled by its peer id (Noise checks it is that peer), its `/p2p/<peer>`
   * addresses only hints; an in-memory pair when the peer is this one.
   */
  async function openStream(plan: DialPlan, signal?: AbortSignal): Promise<Lp> {
    if (plan.peerId.toString() === self) {
      const [outbound, inbound] = await streamPair({ delay: 0 })
      init.serveLocal(inbound)
      return lpStream(outbound, lpOpts)
    }
    const stream = await openDirectStream(node, plan, FORWARD_PROTOCOL, { signal: signal ?? AbortSignal.timeout(timeoutMs), logger })
    return lpStream(stream, lpOpts)
  }

  const send = (lp: Lp, f: Frame) => withTimeout(timeoutMs, (signal) => lp.write(encodeFrame(f), { signal }))
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

  return { self, lpOpts, openStream, send, sendError, readFrame, close, withPlausibleBlame }
}
