import { create } from '@bufbuild/protobuf'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { FrameSchema } from '../../proto/gen/mesh_pb.js'
import { generate } from '../../shared/engine/generate.ts'
import { loadShards } from '../../shared/engine/loadShards.ts'
import { encodeFrame, encodeHidden } from '../../shared/mesh/frames.ts'
import { createMeshPeer } from '../../shared/mesh/createMeshPeer.ts'
import { parseModelConfig, type ModelSpec } from '../../shared/model/modelSpec.ts'
import type { WeightFormat } from '../../shared/model/shardGraph.ts'
import { nodeRuntime } from '../engine/nodeRuntime.ts'
import { splitLayers } from '../cli/localNetwork.ts'
import { createNodeLibp2p } from '../mesh/createNodeLibp2p.ts'
import { fileModelSource } from '../model/fileModelSource.ts'
import { prepareModel } from './engineBench.ts'
import { freePort } from '../net/freePort.ts'

const MAIN = resolve(dirname(fileURLToPath(import.meta.url)), '../cli/main.ts')

export type MeshBenchOptions = {
  models: string[]
  /** @default 3 */
  hosts?: number
  /** Decode tokens measured. @default 32 */
  tokens?: number
  /** Prompt tokens. @default 32 */
  promptTokens?: number
  weights?: WeightFormat
  log?: (line: string) => void
}

export type MeshBenchRow = {
  model: string
  weights: WeightFormat
  hosts: number
  stages: string
  single: { decodeMsPerToken: number; tokensPerSecond: number; ttftMs: number }
  mesh: { decodeMsPerToken: number; tokensPerSecond: number; ttftMs: number }
  /** mesh tokens/s ÷ single-process tokens/s. */
  ratio: number
  /** Frame bytes per token on each hop: origin → first, shard → shard (float16 hidden), last → origin. */
  bytesPerHop: { tokens: number; hidden: number; token: number }
  greedyIdentical: boolean
}


/** Starts one host process and resolves once it serves. */
function startHost(args: string[]): Promise<ChildProcess> {
  const child = spawn(process.execPath, [MAIN, 'start', ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, LOG_LEVEL: 'info' } })
  let log = ''
  return new Promise((resolve, reject) => {
    const onData = (b: Buffer) => {
      log += b.toString()
      if (log.includes('"msg":"serving"')) resolve(child)
    }
    child.stdout!.on('data', onData)
    child.stderr!.on('data', onData)
    child.once('exit', (code) => reject(new Error(`host exited (${code}): ${log.slice(-1500)}`)))
  })
}

/** Frame sizes of one decode step on each kind of hop (length prefix included). */
function frameBytes(spec: ModelSpec): MeshBenchRow['bytesPerHop'] {
  const withPrefix = (n: number) => n + (n < 128 ? 1 : n < 16384 ? 2 : 3)
  const forward = (input: Parameters<typeof create<typeof FrameSchema>>[1]) => withPrefix(encodeFrame(create(FrameSchema, input)).length)
  const base = { sessionId: 'x'.repeat(26), step: 100n, positionOffset: 140 }
  return {
    tokens: forward({ kind: { case: 'forward', value: { ...base, input: { case: 'tokens', value: { ids: [31999] } } } } }),
    hidden: forward({ kind: { case: 'forward', value: { ...base, input: { case: 'hidden', value: encodeHidden(new Float32Array(spec.hiddenSize), spec.hiddenSize) }, timings: [{ peerId: 'p'.repeat(52), computeMs: 1, totalMs: 1 }] } } }),
    token: forward({ kind: { case: 'token', value: { sessionId: base.sessionId, step: 100n, id: 31999, timings: [1, 2, 3].map(() => ({ peerId: 'p'.repeat(52), computeMs: 1, totalMs: 1 })) } } }),
  }
}

/**
 * The same model and prompt in one process (all layers in one shard) and on `hosts` node host
 * processes over libp2p on loopback, this process the origin: decode ms/token, tokens/s, the
 * ratio, time to first token, and the bytes each hop carries per token.
 */
export async function runMeshBench(options: MeshBenchOptions): Promise<MeshBenchRow[]> {
  const log = options.log ?? (() => undefined)
  const rows: MeshBenchRow[] = []
  const weights = options.weights ?? 'float32'
  const tokens = options.tokens ?? 32
  for (const name of options.models) {
    const dir = await prepareModel(name, { log })
    const source = fileModelSource(dir)
    const spec = parseModelConfig(await source.readText('config.json'))
    const prompt = Array.from({ length: options.promptTokens ?? 32 }, (_, i) => (i * 37 + 11) % spec.vocabSize)
    const ranges = splitLayers(spec.numLayers, options.hosts ?? 3)

    log(`${name}: one process`)
    const single = await loadShards({ source, runtime: nodeRuntime(), device: 'cpu', weights })
    await generate({ stages: single.shards, inputIds: prompt, maxNewTokens: 2 })
    const a = await generate({ stages: single.shards, inputIds: prompt, maxNewTokens: tokens })
    await Promise.all(single.shards.map((s) => s.dispose()))

    log(`${name}: ${ranges.length} host processes`)
    const home = await mkdtemp(join(tmpdir(), 'shardmesh-bench-'))
    const ports = await Promise.all(ranges.map(() => freePort()))
    const children = await Promise.all(
      ranges.map((r, i) =>
        startHost(['--model', dir, '--layers', `${r.start}-${r.end}`, '--device', 'cpu', '--weights', weights, '--listen', `/ip4/127.0.0.1/tcp/${ports[i]}`, '--identity', join(home, `${i}.key`)]),
      ),
    )
    const node = await createNodeLibp2p({ privateKey: await generateKeyPair('Ed25519'), relay: false, listen: ['/ip4/127.0.0.1/tcp/0'] })
    try {
      const mesh = await createMeshPeer({ node, model: source.name, numLayers: spec.numLayers, hiddenSize: spec.hiddenSize, stepTimeoutMs: 120_000, bootstrap: ports.map((p) => `/ip4/127.0.0.1/tcp/${p}`) })
      await mesh.refresh()
      const run = (n: number) => mesh.generate({ inputIds: prompt, maxNewTokens: n, maxFailovers: 0 })
      await run(2)
      const b = await run(tokens)
      const stats = (r: { decodeMsPerToken: number; prefillMs: number }) => ({ decodeMsPerToken: r.decodeMsPerToken, tokensPerSecond: 1000 / r.decodeMsPerToken, ttftMs: r.prefillMs })
      const row: MeshBenchRow = {
        model: name,
        weights,
        hosts: ranges.length,
        stages: ranges.map((r) => `${r.start}-${r.end}`).join(','),
        single: stats(a),
        mesh: stats(b),
        ratio: a.decodeMsPerToken / b.decodeMsPerToken,
        bytesPerHop: frameBytes(spec),
        greedyIdentical: JSON.stringify(a.outputIds) === JSON.stringify(b.outputIds),
      }
      rows.push(row)
      log(`  single ${row.single.tokensPerSecond.toFixed(2)} tok/s, mesh ${row.mesh.tokensPerSecond.toFixed(2)} tok/s, ratio ${row.ratio.toFixed(3)}`)
    } finally {
      await node.stop()
      for (const c of children) c.kill('SIGTERM')
      await rm(home, { recursive: true, force: true })
    }
  }
  return rows
}

export function formatMeshTable(rows: MeshBenchRow[]): string {
  const head = ['model', 'weights', 'stages', '1-proc ms/tok', '1-proc tok/s', 'mesh ms/tok', 'mesh tok/s', 'ratio', 'TTFT 1-proc ms', 'TTFT mesh ms', 'B/hop tok|hidden|token', 'same ids']
  const body = rows.map((r) => [
    r.model,
    r.weights,
    r.stages,
    r.single.decodeMsPerToken.toFixed(2),
    r.single.tokensPerSecond.toFixed(2),
    r.mesh.decodeMsPerToken.toFixed(2),
    r.mesh.tokensPerSecond.toFixed(2),
    r.ratio.toFixed(3),
    r.single.ttftMs.toFixed(1),
    r.mesh.ttftMs.toFixed(1),
    `${r.bytesPerHop.tokens}|${r.bytesPerHop.hidden}|${r.bytesPerHop.token}`,
    String(r.greedyIdentical),
  ])
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((b) => b[i]!.length)))
  const line = (cells: string[]) => cells.map((c, i) => c.padEnd(widths[i]!)).join('  ')
  return [line(head), line(widths.map((w) => '-'.repeat(w))), ...body.map(line)].join('\n')
}
