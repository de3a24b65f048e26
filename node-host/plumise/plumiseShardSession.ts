import { randomUUID } from 'node:crypto'
import { KvBudgetError, ShardInputError, UnknownSessionError, type ShardForwardOptions, type ShardInput, type ShardOutput, type ShardSession } from '../../shared/engine/shardSession.ts'
import type { ModelSpec } from '../../shared/model/modelSpec.ts'
import type { LayerRange } from '../../shared/model/shardGraph.ts'
import { createPlumiseClient, PLUMISE_DEADLINES, type PlumiseClient } from './plumiseClient.ts'
import { decodePlumiseHidden, encodePlumiseHidden, PLUMISE_MAX_MESSAGE_BYTES, type PlumiseDtype } from './plumiseTensor.ts'

export type PlumiseShardSessionInit = {
  /** The Plumise node's gRPC endpoint (`http://host:port`, as registered with a Plumise Oracle). */
  endpoint: string
  spec: ModelSpec
  /** The range this relay serves in the mesh: exactly the Plumise node's range, a middle one. */
  range: LayerRange
  /** The model name the node must answer in GetLayerInfo. */
  model: string
  /** The dtype the node computes in (upstream runs bfloat16 and never casts what it receives). @default 'bfloat16' */
  dtype?: PlumiseDtype
  /** Bytes of re-sent hidden states kept across sessions (the node keeps no KV cache). @default 256 MiB */
  budgetBytes?: number
  /** A client to use instead of a new one (closed with the session only when created here). */
  client?: PlumiseClient
}

/** The Plumise node cannot stand in for the range (another range, model, not ready). */
export class PlumiseRelayError extends Error {
  constructor(message: string) {
    super(message)
    this.name = 'PlumiseRelayError'
  }
}

type Session = { prefix: string; step: number; inputs: Float32Array[]; rows: number }

/**
 * A mesh shard whose layers run on a Plumise node over gRPC: the relay of a mixed route. Mesh
 * sessions send it only new positions (the previous hop keeps a KV cache); upstream nodes keep
 * none and take the whole sequence every step, so the relay keeps each session's input rows,
 * sends them all with ForwardPass (request ids `<uuid>_s<step>`, as upstream's first node names
 * them, so a node that caches by prefix computes only the new positions), and passes on the rows
 * of the new positions. A middle range only: a Plumise first node takes no hidden states, and a
 * last node answers a sampled token, not the logits a mesh last shard samples from.
 */
export async function createPlumiseShardSession(init: PlumiseShardSessionInit): Promise<ShardSession> {
  const { spec, range } = init
  const H = spec.hiddenSize
  if (range.start <= 0 || range.end >= spec.numLayers || range.end <= range.start) {
    throw new PlumiseRelayError(`a Plumise node stands in only for a middle range (0 < start < end < ${spec.numLayers}), not [${range.start}, ${range.end})`)
  }
  const dtype = init.dtype ?? 'bfloat16'
  const budget = init.budgetBytes ?? 256 << 20
  const client = init.client ?? createPlumiseClient(init.endpoint)
  const info = await client.getLayerInfo().catch((e: Error) => {
    if (!init.client) client.close()
    throw new PlumiseRelayError(`${init.endpoint}: GetLayerInfo failed: ${e.message}`)
  })
  // Upstream answers an empty model name (spec §1): only a named, different model is refused.
  const problem =
    info.layerStart !== range.start || info.layerEnd !== range.end ? `serves layers [${info.layerStart}, ${info.layerEnd}), not [${range.start}, ${range.end})`
    : info.totalLayers !== spec.numLayers ? `has ${info.totalLayers} layers, the model ${spec.numLayers}`
    : info.modelName && info.modelName !== init.model ? `serves "${info.modelName}", not "${init.model}"`
    : !info.isReady ? 'is not ready'
    : undefined
  if (problem) {
    if (!init.client) client.close()
    throw new PlumiseRelayError(`${init.endpoint} ${problem}`)
  }

  const sessions = new Map<string, Session>()
  const heldBytes = () => [...sessions.values()].reduce((a, s) => a + s.rows * H * 4, 0)
  /** Rows that fit one message in the chosen dtype (bfloat16 and float16: 2 bytes, float32: 4; archives add a little). */
  const maxRows = Math.floor((PLUMISE_MAX_MESSAGE_BYTES - 4096) / (H * (dtype === 'float32' ? 4 : 2)))
  // One call at a time per session (a mesh session sends its frames in order; this keeps it so).
  const locks = new Map<string, Promise<unknown>>()

  async function run(sessionId: string, input: ShardInput, opts: ShardForwardOptions): Promise<ShardOutput> {
    if (!('hidden' in input)) throw new ShardInputError(`shard [${range.start}, ${range.end}) takes a hidden state, got token ids`)
    if (input.hidden.length === 0 || input.hidden.length % H !== 0) throw new ShardInputError(`hidden state of ${input.hidden.length} values is not whole rows of ${H}`)
    if (opts.reset) sessions.delete(sessionId)
    const s = sessions.get(sessionId) ?? (opts.reset ? { prefix: randomUUID().replaceAll('-', ''), step: 0, inputs: [], rows: 0 } : undefined)
    if (!s) throw new UnknownSessionError(sessionId)
    const rows = input.hidden.length / H
    const seq = s.rows + rows
    if (seq > maxRows) throw new ShardInputError(`${seq} positions do not fit one Plumise message in ${dtype}`)
    const needed = heldBytes() + rows * H * 4
    if (needed > budget) throw new KvBudgetError(needed, budget)
    // Kept as a copy: the caller may reuse or transfer its buffer.
    const inputs = [...s.inputs, input.hidden.slice()]
    const full = new Float32Array(seq * H)
    let at = 0
    for (const part of inputs) full.set(part, at), (at += part.length)
    const requestId = `${s.prefix}_s${s.step}`
    // A middle node with no next_node_endpoint runs its layers and answers its hidden states (spec §1, step 3).
    const res = await client.forwardPass(
      { requestId, ...encodePlumiseHidden(full, H, dtype), metadata: { totalNodes: 3, nodeIndex: 1, isFirst: false, isLast: false, nextNodeEndpoint: '' } },
      { timeoutMs: PLUMISE_DEADLINES.forwardFromMiddle },
    ).catch((e: Error) => {
      throw new PlumiseRelayError(`${init.endpoint}: ${e.message}`)
    })
    if (!res.success) throw new PlumiseRelayError(`${init.endpoint}: ${res.error || 'ForwardPass failed'}`)
    let out: Float32Array
    try {
      const decoded = decodePlumiseHidden(res, H)
      if (decoded.seq !== seq) throw new PlumiseRelayError(`${init.endpoint} answered ${decoded.seq} positions for ${seq}`)
      out = decoded.values
    } catch (e) {
      throw e instanceof PlumiseRelayError ? e : new PlumiseRelayError(`${init.endpoint}: ${(e as Error).message}`)
    }
    s.inputs = inputs
    s.rows = seq
    s.step++
    sessions.set(sessionId, s)
    return { hidden: out.slice(s.rows * H - rows * H), seqLen: rows, length: seq }
  }

  return {
    range,
    spec,
    io: { input: 'hidden_states', output: 'hidden_states_out', layers: Array.from({ length: range.end - range.start }, (_, i) => range.start + i), kvHeads: spec.numKvHeads, headDim: spec.headDim, presentLayout: 'appended', kvType: 'float32' }, // no KV here: the Plumise node keeps none either
    // The compute happens on the Plumise node; this process only relays.
    device: 'cpu',
    forward(sessionId, input, opts = {}) {
      const prev = locks.get(sessionId) ?? Promise.resolve()
      const next = prev.then(() => run(sessionId, input, opts))
      const settled = next.catch(() => undefined)
      locks.set(sessionId, settled)
      void settled.then(() => locks.get(sessionId) === settled && locks.delete(sessionId))
      return next
    },
    cachedLength: (sessionId) => sessions.get(sessionId)?.rows ?? 0,
    drop: (sessionId) => void sessions.delete(sessionId),
    kvBytes: heldBytes,
    async dispose() {
      sessions.clear()
      if (!init.client) client.close()
    },
  }
}
