import type { StepInput } from '../../proto/gen/mesh_pb.js'
import type { ShardSession } from '../engine/shardSession.ts'
import { BadTensorError, decodeHidden } from '../mesh/frames.ts'
import { lastRow } from './stepLog.ts'

/** Most positions one recomputation may run (a check is one session's prefix). */
export const MAX_RECOMPUTE_POSITIONS = 8192

let counter = 0

/**
 * Runs a session's inputs through `shard` as one fresh prefill and returns the last position's
 * row (hidden state, or logits on the last shard): what the audited hop's step must have produced,
 * up to backend noise and the prefill-vs-incremental difference (tolerance.ts measures both).
 */
export async function recomputeLastRow(shard: ShardSession, inputs: StepInput[], owner = ''): Promise<Float32Array> {
  const H = shard.spec.hiddenSize
  if (inputs.length === 0) throw new BadTensorError('no inputs to recompute')
  const kind = inputs[0]!.input.case
  if (!kind || inputs.some((i) => i.input.case !== kind)) throw new BadTensorError('inputs mix token ids and hidden states')
  let feed: { tokens: number[] } | { hidden: Float32Array }
  if (kind === 'tokens') {
    const tokens = inputs.flatMap((i) => (i.input.case === 'tokens' ? i.input.value.ids : []))
    if (tokens.length > MAX_RECOMPUTE_POSITIONS) throw new BadTensorError(`${tokens.length} positions (at most ${MAX_RECOMPUTE_POSITIONS})`)
    feed = { tokens }
  } else {
    const rows = inputs.reduce((a, i) => a + (i.input.case === 'hidden' ? (i.input.value.shape[1] ?? 0) : 0), 0)
    if (rows > MAX_RECOMPUTE_POSITIONS) throw new BadTensorError(`${rows} positions (at most ${MAX_RECOMPUTE_POSITIONS})`)
    const parts = inputs.map((i) => decodeHidden(i.input.case === 'hidden' ? i.input.value : undefined, H))
    const hidden = new Float32Array(parts.reduce((a, p) => a + p.length, 0))
    let at = 0
    for (const p of parts) hidden.set(p, (at += p.length) - p.length)
    feed = { hidden }
  }
  const key = `verify/${owner}/${++counter}`
  try {
    const out = await shard.forward(key, feed, { reset: true, owner: `verify/${owner}` })
    return lastRow(out, H)
  } finally {
    shard.drop(key)
  }
}
