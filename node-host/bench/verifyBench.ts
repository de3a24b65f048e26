import { generateKeyPair } from '@libp2p/crypto/keys'
import { loadShards } from '../../shared/engine/loadShards.ts'
import { createRng } from '../../shared/engine/sampling.ts'
import type { ShardSession } from '../../shared/engine/shardSession.ts'
import { createForwardService, type ForwardService } from '../../shared/mesh/forwardService.ts'
import type { PeerShard } from '../../shared/mesh/planRoute.ts'
import { createSampler } from '../../shared/verify/sampler.ts'
import { createSpotChecker, type CheckResult, type SpotChecker } from '../../shared/verify/spotChecker.ts'
import { createStepLog, type StepLog } from '../../shared/verify/stepLog.ts'
import { DEFAULT_TOLERANCE } from '../../shared/verify/tolerance.ts'
import { createVerifyService } from '../../shared/verify/verifyProtocol.ts'
import { nodeRuntime } from '../engine/nodeRuntime.ts'
import { nodeSha256 } from '../host/nodeSha256.ts'
import { prepareModel } from './engineBench.ts'
import { median } from './stats.ts'
import { parseModelConfig } from '../../shared/model/modelSpec.ts'
import type { WeightFormat } from '../../shared/model/shardGraph.ts'
import { createNodeLibp2p, type NodeLibp2p } from '../mesh/createNodeLibp2p.ts'
import { fileModelSource } from '../model/fileModelSource.ts'
import { noisyShard, replayingShard, shortShard } from '../../testing/cheatingShards.ts'
import { loadFixture } from '../../testing/fixtures.ts'

export type VerifyBenchConfig = {
  /** What the origin and the hops do. */
  mode: 'plain' | 'committed' | 'checked' | 'checked-after'
  generations: number
  msPerToken: number
  /** Shard compute on the route, ms (sum over hops), and recomputation by checkers for this origin, ms. */
  routeComputeMs: number
  recomputeMs: number
  checks: number
  /** Ms per token the hops spent committing (StepLog.record, on each step's critical path), summed over the route. */
  commitMsPerToken: number
}

export type VerifyBenchCheater = { cheater: string; steps: number; checks: number; failed: number; detectionRate: number; firstFailAtStep: number | null; honestAccused: number }

export type VerifyBenchReport = {
  bench: 'verify'
  model: string
  weights: WeightFormat
  rate: number
  tolerance: number
  tokens: number
  rounds: number
  configs: VerifyBenchConfig[]
  /** checked vs plain, side by side in one run: checks beside the generation, and held until it is done. */
  addedLatency: number
  addedLatencyAfter: number
  /**
   * Median over rounds of each mode's ms/token over plain's in the same round, minus one: the
   * generations of one round run back to back, so a slow stretch of the shared machine cancels
   * out of the ratio (the means above carry it).
   */
  pairedAddedLatency: { committed: number; checked: number; 'checked-after': number }
  /** Recomputation ms per ms of route compute, at the rate. */
  extraComputeShare: number
  /** committed vs plain: signing and retaining every step. */
  commitLatency: number
  /**
   * The hops' time in StepLog.record per token (committed, checked, checked-after) over plain's
   * ms/token: the commitments' share of latency measured directly, steadier than the difference
   * of two noisy timings on a shared machine.
   */
  commitShare: number
  cheaters: VerifyBenchCheater[]
  note: string
}

type Range = { start: number; end: number }
const DOCS_MODEL = 'docs-llama-7m'

/**
 * The cost of spot checks on a model (docs-llama-7m, or a synthesized preset such as
 * tinyllama-1.1b) over libp2p on loopback (one process): three origins
 * over the same shards, interleaved generation by generation so load affects them alike: plain
 * hops (no commitments), committing hops, and committing hops checked at `rate` by the origin.
 * Then each cheater (test-only wrappers) on a route at the same rate: share of its checked steps
 * that fail, and the step of the first failure.
 */
export async function runVerifyBench(opts: { model?: string; weights?: WeightFormat; rounds?: number; tokens?: number; rate?: number; log?: (line: string) => void } = {}): Promise<VerifyBenchReport> {
  const rounds = opts.rounds ?? 40
  const tokens = opts.tokens ?? 48
  const rate = opts.rate ?? 0.03
  const weights = opts.weights ?? 'float32'
  const log = opts.log ?? (() => undefined)
  const MODEL = opts.model ?? DOCS_MODEL
  const source = fileModelSource(await prepareModel(MODEL, { log }))
  const spec = parseModelConfig(JSON.parse(await source.readText('config.json')))
  const L = spec.numLayers
  const H = spec.hiddenSize
  const nodes: NodeLibp2p[] = []
  const shardOf = async (range: Range): Promise<ShardSession> => (await loadShards({ source, runtime: nodeRuntime({ spinning: false }), device: 'cpu', ranges: [range], weights })).shards[0]!
  const forwards: Array<{ service: ForwardService; committed: boolean }> = []
  const verifiers: Array<ReturnType<typeof createVerifyService>> = []
  const stepLogs: StepLog[] = []

  async function peer(shard: ShardSession, committed: boolean, latencyMs: number): Promise<PeerShard> {
    const privateKey = await generateKeyPair('Ed25519')
    const node = await createNodeLibp2p({ privateKey })
    nodes.push(node)
    const stepLog = committed ? createStepLog({ signer: { peerId: node.peerId.toString(), sign: (d) => privateKey.sign(d) }, model: MODEL, hiddenSize: H, weights, sha256: nodeSha256 }) : undefined
    if (stepLog) stepLogs.push(stepLog)
    const service = createForwardService({ node, model: MODEL, hiddenSize: H, shard, stepLog, stepTimeoutMs: 60_000 })
    await service.start()
    forwards.push({ service, committed })
    if (stepLog) {
      const v = createVerifyService({ node, model: MODEL, log: stepLog, shard: () => shard, weights })
      await v.start()
      verifiers.push(v)
    }
    return { peerId: node.peerId.toString(), multiaddrs: node.getMultiaddrs().map(String), ...shard.range, latencyMs, weights }
  }
  async function origin(checker?: (node: NodeLibp2p) => SpotChecker): Promise<{ service: ForwardService; checker?: SpotChecker }> {
    const node = await createNodeLibp2p({ privateKey: await generateKeyPair('Ed25519'), relay: false })
    nodes.push(node)
    const c = checker?.(node)
    const service = createForwardService({ node, model: MODEL, hiddenSize: H, spotChecker: c, stepTimeoutMs: 60_000 })
    await service.start()
    return { service, checker: c }
  }
  const routeCompute = () => forwards.reduce((a, f) => a + f.service.stats().computeMs, 0)
  const recompute = () => verifiers.reduce((a, v) => a + v.stats().recomputeMs, 0)
  const recordMs = () => stepLogs.reduce((a, l) => a + l.stats().recordMs, 0)

  try {
    log('loading shards')
    const ranges: Range[] = [{ start: 0, end: Math.round(L * 0.375) }, { start: Math.round(L * 0.375), end: Math.round(L * 0.75) }, { start: Math.round(L * 0.75), end: L }]
    // The fixture's prompts on docs-llama-7m; fixed pseudo-random ids (16–40 tokens) on a synthesized model.
    const prompts: number[][] =
      MODEL === DOCS_MODEL
        ? (await loadFixture(DOCS_MODEL)).prompts.map((p) => p.input_ids)
        : Array.from({ length: 4 }, (_, i) => {
            const rng = createRng(1000 + i)
            return Array.from({ length: 16 + 8 * i }, () => Math.floor(rng() * spec.vocabSize))
          })
    const shards: ShardSession[] = []
    const replicas: ShardSession[] = []
    // One at a time: a cold build of a large model uses every core.
    for (const r of ranges) shards.push(await shardOf(r))
    for (const r of ranges) replicas.push(await shardOf(r))
    // The plain and committed networks run the same shard objects (each its own sessions), so compute is alike.
    const plain: PeerShard[] = []
    const committed: PeerShard[] = []
    for (const [i, s] of shards.entries()) {
      plain.push(await peer(s, false, 1))
      committed.push(await peer(s, true, 1), await peer(replicas[i]!, true, 5))
    }
    const sampler = (seed = 42) => createSampler({ rate, newPeerRate: rate, random: createRng(seed) })
    const origins = {
      plain: await origin(),
      committed: await origin(),
      checked: await origin((node) => createSpotChecker({ node, model: MODEL, sampler: sampler() })),
      'checked-after': await origin((node) => createSpotChecker({ node, model: MODEL, sampler: sampler(43), holdUntilFlush: true })),
    }
    const peersOf = { plain, committed, checked: committed, 'checked-after': committed }
    const configs = new Map<VerifyBenchConfig['mode'], VerifyBenchConfig & { ms: number; tokens: number }>()
    const MODES = ['plain', 'committed', 'checked', 'checked-after'] as const
    for (const mode of MODES) configs.set(mode, { mode, generations: 0, msPerToken: 0, routeComputeMs: 0, recomputeMs: 0, checks: 0, commitMsPerToken: 0, ms: 0, tokens: 0 })
    // A warm-up generation each, not counted.
    for (const mode of MODES) await origins[mode].service.generate({ peers: () => peersOf[mode], numLayers: L, inputIds: prompts[0]!, maxNewTokens: 4 })
    origins['checked-after'].checker!.flush()
    await origins.checked.checker!.settled()
    await origins['checked-after'].checker!.settled()
    const perRound = new Map<VerifyBenchConfig['mode'], number[]>(MODES.map((m) => [m, []]))
    for (let r = 0; r < rounds; r++) {
      // Order rotates each round, so no mode always runs first.
      const order = MODES.map((_, i, a) => a[(i + r) % a.length]!)
      for (const mode of order) {
        const c = configs.get(mode)!
        const p = prompts[r % prompts.length]!
        const [rc0, rr0, rec0] = [routeCompute(), recompute(), recordMs()]
        const g = await origins[mode].service.generate({ peers: () => peersOf[mode], numLayers: L, inputIds: p, maxNewTokens: tokens })
        // 'checked' runs its checks beside the generation, 'checked-after' once it is done (as a node host does);
        // either way their cost is counted once they are done, before the next generation starts.
        origins[mode].checker?.flush()
        await origins[mode].checker?.settled()
        c.generations++
        perRound.get(mode)!.push(g.decodeMsPerToken)
        c.ms += g.decodeMsPerToken * Math.max(0, g.outputIds.length - 1)
        c.tokens += Math.max(0, g.outputIds.length - 1)
        c.routeComputeMs += routeCompute() - rc0
        c.recomputeMs += recompute() - rr0
        // the sum for now; per token below
        c.commitMsPerToken += recordMs() - rec0
      }
      log(`round ${r + 1}/${rounds}`)
    }
    for (const mode of ['checked', 'checked-after'] as const) {
      const s = origins[mode].checker!.stats()
      configs.get(mode)!.checks = s.pass + s.fail + s.unverified + s['no-checker']
    }
    const out: VerifyBenchConfig[] = [...configs.values()].map(({ ms, tokens: n, ...c }) => ({ ...c, msPerToken: n ? ms / n : 0, commitMsPerToken: n ? c.commitMsPerToken / n : 0 }))
    const by = (m: VerifyBenchConfig['mode']) => out.find((c) => c.mode === m)!
    const paired = (m: VerifyBenchConfig['mode']) => {
      const plain = perRound.get('plain')!
      const ratios = perRound.get(m)!.map((x, i) => x / plain[i]!)
      return ratios.length ? median(ratios) - 1 : 0
    }
    const checked = by('checked')

    const cheaters: VerifyBenchCheater[] = []
    const kinds: Array<[string, () => Promise<ShardSession>]> = [
      ['noise 10 % RMS', async () => noisyShard(await shardOf(ranges[1]!), 0.1)],
      ['replayed answer', async () => replayingShard(await shardOf(ranges[1]!))],
      [`fewer layers ([${ranges[1]!.start},${ranges[1]!.end - 1}) as [${ranges[1]!.start},${ranges[1]!.end}))`, async () => shortShard(await shardOf({ start: ranges[1]!.start, end: ranges[1]!.end - 1 }), ranges[1]!)],
    ]
    for (const [name, make] of kinds) {
      const bad = await peer(await make(), true, 0)
      const results: CheckResult[] = []
      const o = await origin((node) => createSpotChecker({ node, model: MODEL, sampler: sampler(100 + cheaters.length), maxInFlight: 8, onResult: (x) => void results.push(x) }))
      let steps = 0
      for (let r = 0; r < rounds; r++) {
        await o.service.generate({
          peers: () => [...committed, bad],
          numLayers: L,
          inputIds: prompts[r % prompts.length]!,
          maxNewTokens: tokens,
          onToken: (_id, _i, timings) => void (steps += timings.filter((x) => x.peerId === bad.peerId).length),
        })
        await o.checker!.settled()
      }
      const mine = results.filter((x) => x.peerId === bad.peerId && (x.verdict === 'pass' || x.verdict === 'fail'))
      const failed = mine.filter((x) => x.verdict === 'fail').length
      const firsts = mine.filter((x) => x.verdict === 'fail').map((x) => x.seq)
      const first = firsts.length ? Math.min(...firsts) : null
      const honestAccused = results.filter((x) => x.verdict === 'fail' && x.peerId !== bad.peerId).length
      cheaters.push({ cheater: name, steps, checks: mine.length, failed, detectionRate: mine.length ? failed / mine.length : 0, firstFailAtStep: first, honestAccused })
      log(`${name}: ${failed}/${mine.length} checks failed over ${steps} steps`)
    }
    return {
      bench: 'verify',
      model: MODEL,
      weights,
      rate,
      tolerance: DEFAULT_TOLERANCE,
      tokens,
      rounds,
      configs: out,
      addedLatency: by('plain').msPerToken ? checked.msPerToken / by('plain').msPerToken - 1 : 0,
      addedLatencyAfter: by('plain').msPerToken ? by('checked-after').msPerToken / by('plain').msPerToken - 1 : 0,
      pairedAddedLatency: { committed: paired('committed'), checked: paired('checked'), 'checked-after': paired('checked-after') },
      extraComputeShare: checked.routeComputeMs ? checked.recomputeMs / checked.routeComputeMs : 0,
      commitLatency: by('plain').msPerToken ? by('committed').msPerToken / by('plain').msPerToken - 1 : 0,
      commitShare: by('plain').msPerToken ? (by('committed').commitMsPerToken + checked.commitMsPerToken + by('checked-after').commitMsPerToken) / 3 / by('plain').msPerToken : 0,
      cheaters,
      note: 'ORT cpu, one process, libp2p TCP on loopback: checkers share the cores with the route (across machines they would not); the machine is shared (2 cores): compare the rows of one run only',
    }
  } finally {
    for (const n of nodes) await n.stop()
  }
}

export function formatVerifyTable(r: VerifyBenchReport): string {
  const pct = (x: number) => `${(x * 100).toFixed(1)} %`
  const lines = [
    `spot checks, ${r.model} (${r.weights}), rate ${pct(r.rate)}, tolerance ${r.tolerance}, ${r.rounds} generations × ${r.tokens} tokens per mode (interleaved)`,
    '',
    '| mode | ms/token | route compute ms | recompute ms | checks | commit ms/token |',
    '| --- | ---: | ---: | ---: | ---: | ---: |',
    ...r.configs.map((c) => `| ${c.mode} | ${c.msPerToken.toFixed(2)} | ${c.routeComputeMs.toFixed(0)} | ${c.recomputeMs.toFixed(0)} | ${c.checks} | ${c.commitMsPerToken.toFixed(3)} |`),
    '',
    `added latency vs plain, median of each round's ratio: commitments ${pct(r.pairedAddedLatency.committed)}, checks after the generation (node hosts) ${pct(r.pairedAddedLatency['checked-after'])}, checks beside it ${pct(r.pairedAddedLatency.checked)}`,
    `added latency vs plain, means: checks beside the generation ${pct(r.addedLatency)}, checks after it (node hosts) ${pct(r.addedLatencyAfter)}; commitments alone (committed vs plain): ${pct(r.commitLatency)}, measured in the hops (commit ms/token over plain ms/token): ${pct(r.commitShare)}; extra compute (recompute / route compute): ${pct(r.extraComputeShare)}`,
    '',
    '| cheater | its steps | checked | failed | detection rate | first failure at its step | honest hops accused |',
    '| --- | ---: | ---: | ---: | ---: | ---: | ---: |',
    ...r.cheaters.map((c) => `| ${c.cheater} | ${c.steps} | ${c.checks} | ${c.failed} | ${pct(c.detectionRate)} | ${c.firstFailAtStep ?? '-'} | ${c.honestAccused} |`),
    '',
    r.note,
  ]
  return lines.join('\n')
}
