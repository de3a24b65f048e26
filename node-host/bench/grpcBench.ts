import { loadShards } from '../../shared/engine/loadShards.ts'
import type { ShardSession } from '../../shared/engine/shardSession.ts'
import { nodeRuntime } from '../engine/nodeRuntime.ts'
import { splitLayers } from '../cli/localNetwork.ts'
import { fileModelSource } from '../model/fileModelSource.ts'
import { createPlumiseClient } from '../plumise/plumiseClient.ts'
import { plumiseGenerate } from '../plumise/plumiseGenerate.ts'
import { createPlumiseServer, type PlumiseServer } from '../plumise/plumiseServer.ts'
import type { PlumiseDtype } from '../plumise/plumiseTensor.ts'
import { createPrefixKvCache } from '../plumise/prefixKvCache.ts'
import { prepareModel } from './engineBench.ts'

export type GrpcBenchOptions = {
  models: string[]
  /** Context lengths (prompt tokens) measured. @default [32, 256] */
  contexts?: number[]
  /** Decode steps measured per run. @default 16 */
  tokens?: number
  /** Hidden states on the wire. @default 'float32' */
  dtype?: PlumiseDtype
  log?: (line: string) => void
}

export type GrpcBenchRow = {
  model: string
  hosts: 3
  stages: string
  dtype: PlumiseDtype
  context: number
  tokens: number
  /** Upstream's way: every node recomputes the whole sequence every step (median decode step, ms). */
  fullMsPerToken: number
  /** Our nodes: KV cache by request id prefix, only new positions computed (median decode step, ms). */
  cachedMsPerToken: number
  speedup: number
  /** Both modes produced the same greedy tokens. */
  identical: boolean
}

/**
 * ms per generated token through three hosts over gRPC as upstream Plumise chains them: the
 * first host runs the loop (its layers in-process), calls ForwardPass on the second, which
 * forwards to the third (last: LM head + sampling). Decode steps only (the prompt's first step
 * is excluded), in one process on loopback.
 */
export async function runGrpcBench(opts: GrpcBenchOptions): Promise<GrpcBenchRow[]> {
  const contexts = opts.contexts ?? [32, 256]
  const tokens = opts.tokens ?? 16
  const dtype = opts.dtype ?? 'float32'
  const rows: GrpcBenchRow[] = []
  for (const model of opts.models) {
    const dir = await prepareModel(model, { log: opts.log })
    const source = fileModelSource(dir)
    const probe = await loadShards({ source, runtime: nodeRuntime(), device: 'cpu', ranges: [{ start: 0, end: 1 }] })
    const L = probe.spec.numLayers
    await Promise.all(probe.shards.map((s) => s.dispose()))
    const ranges = splitLayers(L, 3)
    opts.log?.(`${model}: loading ${ranges.map((r) => `${r.start}-${r.end}`).join(', ')}`)
    const { spec, shards } = await loadShards({ source, runtime: nodeRuntime(), device: 'cpu', ranges })
    const servers: PlumiseServer[] = []
    try {
      const chain = async (cache: boolean) => {
        const last = await createPlumiseServer({ model, address: '0xbench', eosTokenIds: [], cache, shard: () => shards[2] })
        const middle = await createPlumiseServer({ model, address: '0xbench', eosTokenIds: [], cache, shard: () => shards[1], next: () => last.endpoint })
        servers.push(last, middle)
        return { middle, last }
      }
      const full = await chain(false)
      const cached = await chain(true)
      for (const context of contexts) {
        if (context + tokens > spec.maxPositions) {
          opts.log?.(`  skipping context ${context}: over the model's ${spec.maxPositions} positions`)
          continue
        }
        const inputIds = Array.from({ length: context }, (_, i) => 100 + ((i * 7919) % (spec.vocabSize - 200)))
        const run = async (mode: { middle: PlumiseServer; last: PlumiseServer }, cache: boolean, first: ShardSession) => {
          const client = createPlumiseClient(mode.middle.endpoint)
          const stamps: number[] = []
          try {
            const r = await plumiseGenerate({
              first: createPrefixKvCache({ shard: first, enabled: cache }),
              hiddenSize: spec.hiddenSize,
              route: { client, endpoints: [mode.last.endpoint] },
              inputIds,
              params: { doSample: false, repetitionPenalty: 1, maxNewTokens: tokens + 1 },
              eosTokenIds: [],
              dtype,
              onToken: () => void stamps.push(performance.now()),
            })
            // median step time: robust to a neighbour's burst on a shared machine
            const steps = stamps.slice(1).map((t, i) => t - stamps[i]!).sort((a, b) => a - b)
            return { ids: r.ids, msPerToken: steps[steps.length >> 1]! }
          } finally {
            client.close()
          }
        }
        await run(cached, true, shards[0]!) // warm-up: sessions, connections, JIT
        const f = await run(full, false, shards[0]!)
        const c = await run(cached, true, shards[0]!)
        const row: GrpcBenchRow = {
          model,
          hosts: 3,
          stages: ranges.map((r) => `${r.start}-${r.end}`).join(','),
          dtype,
          context,
          tokens,
          fullMsPerToken: round(f.msPerToken),
          cachedMsPerToken: round(c.msPerToken),
          speedup: round(f.msPerToken / c.msPerToken),
          identical: f.ids.join() === c.ids.join(),
        }
        opts.log?.(`  context ${context}: full ${row.fullMsPerToken} ms/token, cached ${row.cachedMsPerToken} ms/token`)
        rows.push(row)
      }
    } finally {
      for (const s of servers) await s.close()
      for (const s of shards) await s.dispose()
    }
  }
  return rows
}

const round = (x: number) => Math.round(x * 100) / 100

export function formatGrpcTable(rows: GrpcBenchRow[]): string {
  const head = ['model', 'stages', 'dtype', 'context', 'tokens', 'full-sequence ms/token', 'cached ms/token', 'speedup', 'same tokens']
  const lines = rows.map((r) => [r.model, r.stages, r.dtype, String(r.context), String(r.tokens), r.fullMsPerToken.toFixed(2), r.cachedMsPerToken.toFixed(2), `${r.speedup.toFixed(2)}x`, r.identical ? 'yes' : 'NO'])
  const widths = head.map((h, i) => Math.max(h.length, ...lines.map((l) => l[i]!.length)))
  const fmt = (cells: string[]) => cells.map((c, i) => c.padEnd(widths[i]!)).join('  ')
  return [fmt(head), fmt(widths.map((w) => '-'.repeat(w))), ...lines.map(fmt)].join('\n')
}
