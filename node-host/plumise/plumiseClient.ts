import type { MessageInitShape } from '@bufbuild/protobuf'
import { createClient } from '@connectrpc/connect'
import { createGrpcTransport, Http2SessionManager } from '@connectrpc/connect-node'
import { InferencePipeline, type ForwardRequestSchema, type ForwardResponse, type LayerInfoResponse, type PingResponse, type TokenChunk } from '../../proto/gen/inference_pb.js'
import { PLUMISE_MAX_MESSAGE_BYTES } from './plumiseTensor.ts'

/** Upstream's deadlines (spec §1): ForwardPass 30 s from the first node, 60 s from a middle node, Ping/GetLayerInfo 10 s. */
export const PLUMISE_DEADLINES = { forwardFromFirst: 30_000, forwardFromMiddle: 60_000, info: 10_000 } as const

export type ForwardRequestInit = MessageInitShape<typeof ForwardRequestSchema>

/**
 * `host:port` or `http(s)://host:port` (upstream registers `http://host:port` and strips the
 * scheme to dial) as a base URL.
 */
export function plumiseBaseUrl(endpoint: string): string {
  const url = /^https?:\/\//.test(endpoint) ? endpoint : `http://${endpoint}`
  return new URL(url).origin
}

/** HTTP/2 stream and connection flow-control windows: a hidden state fits without waiting for WINDOW_UPDATEs. */
export const HTTP2_WINDOW = 32 << 20

/** A gRPC client of one Plumise InferencePipeline node over one HTTP/2 connection. */
export function createPlumiseClient(endpoint: string) {
  const baseUrl = plumiseBaseUrl(endpoint)
  const sessionManager = new Http2SessionManager(baseUrl, undefined, { settings: { initialWindowSize: HTTP2_WINDOW } })
  const transport = createGrpcTransport({ baseUrl, sessionManager, readMaxBytes: PLUMISE_MAX_MESSAGE_BYTES, writeMaxBytes: PLUMISE_MAX_MESSAGE_BYTES })
  const client = createClient(InferencePipeline, transport)
  return {
    endpoint: baseUrl,
    forwardPass(req: ForwardRequestInit, opts: { timeoutMs?: number; signal?: AbortSignal } = {}): Promise<ForwardResponse> {
      return client.forwardPass(req, { timeoutMs: opts.timeoutMs ?? PLUMISE_DEADLINES.forwardFromFirst, signal: opts.signal })
    },
    forwardPassStream(req: ForwardRequestInit, opts: { timeoutMs?: number; signal?: AbortSignal } = {}): AsyncIterable<TokenChunk> {
      return client.forwardPassStream(req, { timeoutMs: opts.timeoutMs, signal: opts.signal })
    },
    getLayerInfo(opts: { timeoutMs?: number } = {}): Promise<LayerInfoResponse> {
      return client.getLayerInfo({}, { timeoutMs: opts.timeoutMs ?? PLUMISE_DEADLINES.info })
    },
    ping(opts: { timeoutMs?: number } = {}): Promise<PingResponse> {
      return client.ping({}, { timeoutMs: opts.timeoutMs ?? PLUMISE_DEADLINES.info })
    },
    close(): void {
      sessionManager.abort()
    },
  }
}

export type PlumiseClient = ReturnType<typeof createPlumiseClient>
