import assert from 'node:assert/strict'
import { after, before, describe, test } from 'node:test'
import { generate, type GenerateResult } from './generate.ts'
import { createShardSession, type ShardSession } from './shardSession.ts'
import { buildShardGraph } from '../model/buildShardGraph.ts'
import { parseModelConfig, type ModelSpec } from '../model/modelSpec.ts'
import { openSafetensors } from '../model/safetensors.ts'
import { fileModelSource } from '../../node-host/model/fileModelSource.ts'
import { FIXTURE_NAMES, loadFixture, logitTolerance, maxAbsDiff, splits, type Fixture } from '../../testing/fixtures.ts'
import { nodeRuntime } from '../../node-host/engine/nodeRuntime.ts'
import { createShardLoad } from '../mesh/shardLoad.ts'

/** Rows (sessions) and positions per row of every run a stage made. */
type RunLog = Array<{ rows: number; positions: number }>

type StageOptions = { maxBatch?: number; prefillChunk?: number }

async function openStage(fixture: Fixture, range: { start: number; end: number }, opts: StageOptions & { onRun: (rows: number, positions: number) => void }): Promise<ShardSession> {
  const source = fileModelSource(fixture.dir)
  const spec = parseModelConfig(await source.readText('config.json'))
  const graph = await buildShardGraph({ spec, index: await openSafetensors(source), range })
  return createShardSession({ spec, graph, runtime: nodeRuntime(), device: 'cpu', ...opts })
}

/** The fixture in three stages, each logging its runs. */
async function load(fixture: Fixture, opts: StageOptions): Promise<{ shards: ShardSession[]; runs: RunLog[]; spec: ModelSpec }> {
  const spec = parseModelConfig(await fileModelSource(fixture.dir).readText('config.json'))
  const cuts = splits(spec.numLayers)[2]!
  const runs: RunLog[] = []
  const shards: ShardSession[] = []
  for (const [k, end] of cuts.slice(1).entries()) {
    const log: RunLog = []
    runs.push(log)
    shards.push(await openStage(fixture, { start: cuts[k]!, end }, { ...opts, onRun: (rows, positions) => log.push({ rows, positions }) }))
  }
  return { shards, runs, spec }
}

/** Greedy ids equal to the reference; prefill and every decode step's logits within the fixture tolerance. */
async function assertReference(fixture: Fixture, spec: ModelSpec, pi: number, r: GenerateResult, label: string) {
  const p = fixture.prompts[pi]!
  assert.deepEqual(r.outputIds, p.greedy_new_ids, `${label}: greedy ids`)
  const ref = await fixture.reference([`p${pi}.logits`, `p${pi}.decode_logits`])
  const tol = logitTolerance(fixture.name)
  const prefillErr = maxAbsDiff(r.prefillLogits!, ref.get(`p${pi}.logits`)!)
  assert.ok(prefillErr < tol, `${label}: prefill logits max abs error ${prefillErr}`)
  const V = spec.vocabSize
  const decode = ref.get(`p${pi}.decode_logits`)!
  r.decodeLogits!.forEach((row, k) => {
    const err = maxAbsDiff(row, decode.subarray(k * V, (k + 1) * V))
    assert.ok(err < tol, `${label}: decode step ${k} logits max abs error ${err}`)
  })
}

for (const name of FIXTURE_NAMES) {
  describe(`continuous batching on node cpu: ${name} against the Hugging Face reference`, () => {
    let fixture: Fixture
    let batched: Awaited<ReturnType<typeof load>>
    let whole: ShardSession
    const wholeRuns: RunLog = []
    before(async () => {
      fixture = await loadFixture(name)
      batched = await load(fixture, { maxBatch: 16, prefillChunk: 5 })
      whole = await openStage(fixture, { start: 0, end: batched.spec.numLayers }, { maxBatch: 16, onRun: (rows, positions) => wholeRuns.push({ rows, positions }) })
    })
    after(async () => {
      for (const s of [...batched.shards, whole]) await s.dispose()
    })

    test('concurrent sessions share decode steps and each still gets the reference logits and greedy ids', async () => {
      for (const log of batched.runs) log.length = 0
      // Every prompt twice: four sessions at once, three stages.
      const sessions = [0, 1, 0, 1]
      const results = await Promise.all(
        sessions.map((pi, k) => generate({ stages: batched.shards, inputIds: fixture.prompts[pi]!.input_ids, maxNewTokens: fixture.prompts[pi]!.new_tokens, sessionId: `s${k}`, keepLogits: true })),
      )
      for (const [k, r] of results.entries()) await assertReference(fixture, batched.spec, sessions[k]!, r, `session ${k} (p${sessions[k]})`)
      for (const [stage, log] of batched.runs.entries()) {
        // The sessions spread over the three stages (a pipeline), so a stage batches some of them at a time.
        const widest = Math.max(...log.map((r) => r.rows))
        assert.ok(widest >= 2, `stage ${stage} ran decode steps of several sessions as one batch (widest ${widest})`)
        // Prompts of 9 to 26 positions in slices of at most 5.
        assert.ok(log.every((r) => r.positions <= 5), `stage ${stage}: prefill ran in slices of at most 5 positions`)
      }
    })

    test('a session joining and others leaving a running batch leave its tokens and logits as when it runs alone', async () => {
      const p0 = fixture.prompts[0]!
      const p1 = fixture.prompts[1]!
      const alone = await generate({ stages: [whole], inputIds: p0.input_ids, maxNewTokens: p0.new_tokens, sessionId: 'alone', keepLogits: true })
      wholeRuns.length = 0
      // A runs the whole way; B leaves after 8 tokens; C joins once A has 5 tokens and leaves before A ends.
      let joined: Promise<GenerateResult> | undefined
      const a = generate({
        stages: [whole],
        inputIds: p0.input_ids,
        maxNewTokens: p0.new_tokens,
        sessionId: 'A',
        keepLogits: true,
        onToken: (_id, i) => {
          if (i === 4) joined = generate({ stages: [whole], inputIds: p1.input_ids, maxNewTokens: 6, sessionId: 'C', keepLogits: true })
        },
      })
      const b = generate({ stages: [whole], inputIds: p1.input_ids, maxNewTokens: 8, sessionId: 'B', keepLogits: true })
      const [ra, rb] = await Promise.all([a, b])
      const rc = await joined!
      assert.deepEqual(ra.outputIds, alone.outputIds, 'A: same tokens as alone')
      ra.decodeLogits!.forEach((row, k) => {
        const err = maxAbsDiff(row, alone.decodeLogits![k]!)
        assert.ok(err < 1e-4, `A: decode step ${k} logits differ from alone by ${err}`)
      })
      await assertReference(fixture, batched.spec, 0, ra, 'A')
      assert.deepEqual(rb.outputIds, p1.greedy_new_ids.slice(0, 8), 'B: the reference tokens until it left')
      assert.deepEqual(rc.outputIds, p1.greedy_new_ids.slice(0, 6), 'C: the reference tokens after joining late')
      const widths = new Set(wholeRuns.filter((r) => r.positions === 1).map((r) => r.rows))
      assert.ok(widths.has(2) && widths.has(3), `A ran in batches of two (with B, then with C) and three (B still there when C joined): widths ${[...widths]}`)
      assert.ok(widths.has(1), 'and alone after the others left')
    })
  })
}

describe('continuous batching: a long prompt does not stall decoding sessions', () => {
  let fixture: Fixture
  let stage: ShardSession
  const runs: RunLog = []
  before(async () => {
    fixture = await loadFixture('docs-llama-7m')
    stage = await openStage(fixture, { start: 0, end: 8 }, { maxBatch: 16, prefillChunk: 4, onRun: (rows, positions) => runs.push({ rows, positions }) })
  })
  after(async () => {
    await stage.dispose()
  })

  test('decode steps of running sessions go between the slices of a new prompt', async () => {
    const p = fixture.prompts[0]!
    await stage.forward('run', { tokens: p.input_ids }, { reset: true })
    runs.length = 0
    const order: string[] = []
    // A 64-position prompt (16 slices of 4) arrives together with a running session's next step.
    const long = stage.forward('long', { tokens: Array.from({ length: 64 }, (_, i) => (i * 37 + 11) % 4096) }, { reset: true }).then(() => order.push('long'))
    const step = stage.forward('run', { tokens: [p.greedy_new_ids[0]!] }).then(() => order.push('step'))
    await Promise.all([long, step])
    assert.deepEqual(order, ['step', 'long'], 'the decode step finished before the long prompt')
    assert.ok(runs.findIndex((r) => r.positions === 1) < runs.length - 1, `the step ran before the prompt's last slice: ${JSON.stringify(runs)}`)
    assert.equal(stage.cachedLength('long'), 64)
  })

  test('a generating session keeps making tokens, the reference ones, while another prefills a long prompt', async () => {
    const p = fixture.prompts[0]!
    runs.length = 0
    const events: string[] = []
    let long: Promise<unknown> | undefined
    // 96 positions in slices of 4: 24 slices, each round of the scheduler runs one beside the decode step.
    const prompt = Array.from({ length: 96 }, (_, i) => (i * 53 + 7) % 4096)
    const r = await generate({
      stages: [stage],
      inputIds: p.input_ids,
      maxNewTokens: p.new_tokens,
      sessionId: 'gen',
      onToken: (_id, i) => {
        events.push('token')
        if (i !== 1) return
        // From here on, the runs are the prompt's slices and this session's steps.
        runs.length = 0
        long = stage.forward('prompt', { tokens: prompt }, { reset: true }).then(() => events.push('prompt done'))
      },
    })
    await long
    assert.deepEqual(r.outputIds, p.greedy_new_ids, 'the reference greedy ids, with another session prefilling beside it')
    const during = events.indexOf('prompt done') - 2
    // Strict alternation gives one token per slice (24); leave room for a round whose step was late.
    assert.ok(during >= 12, `tokens made while the prompt was prefilled: ${during} (events ${events.join(',')})`)
    const slices = runs.map((x, i) => ({ ...x, i })).filter((x) => x.positions === 4)
    assert.equal(slices.length, 24, 'the prompt ran in 24 slices of 4 positions')
    const stepsBetween = runs.slice(slices[0]!.i, slices.at(-1)!.i).filter((x) => x.positions === 1).length
    assert.ok(stepsBetween >= 12, `decode steps ran between the prompt's first and last slices: ${stepsBetween}`)
    assert.equal(stage.cachedLength('prompt'), 96)
  })
})

describe('continuous batching: what a shard reports as waiting', () => {
  let fixture: Fixture
  let stage: ShardSession
  let onRun: (rows: number) => void = () => undefined
  before(async () => {
    fixture = await loadFixture('docs-llama-7m')
    stage = await openStage(fixture, { start: 0, end: 8 }, { maxBatch: 16, onRun: (rows) => onRun(rows) })
  })
  after(async () => {
    await stage.dispose()
  })

  test('decode steps running as one batch are not queued; a step arriving during the run is', async () => {
    const p = fixture.prompts[0]!
    const ids = ['a', 'b', 'c', 'd']
    await Promise.all(ids.map((id) => stage.forward(id, { tokens: p.input_ids }, { reset: true })))
    const load = createShardLoad()
    const seen: Array<{ rows: number; waiting: number; reported: number; before: number }> = []
    let late: Promise<unknown> | undefined
    onRun = (rows) => {
      if (rows === 4 && !late) {
        seen.push({ rows, waiting: stage.waitingCalls!(), reported: load.report(4, stage.waitingCalls!()).queueDepth, before: load.report(4).queueDepth })
        // Another session's step arrives while the batch runs: it waits for the next run.
        late = load.step(stage.forward('a', { tokens: [p.greedy_new_ids[1]!] }))
        seen.push({ rows: 0, waiting: stage.waitingCalls!(), reported: load.report(4, stage.waitingCalls!()).queueDepth, before: load.report(4).queueDepth })
      }
    }
    await Promise.all(ids.map((id) => load.step(stage.forward(id, { tokens: [p.greedy_new_ids[0]!] }))))
    await late
    onRun = () => undefined
    assert.equal(seen.length, 2, 'the four steps ran as one batch')
    // Counting started steps, the batch alone looked like three queued steps (the old report).
    assert.deepEqual(seen[0], { rows: 4, waiting: 0, reported: 0, before: 3 })
    assert.deepEqual(seen[1], { rows: 0, waiting: 1, reported: 1, before: 4 })
    assert.equal(stage.waitingCalls!(), 0)
    assert.equal(stage.cachedLength('a'), p.input_ids.length + 2)
  })
})

describe('continuous batching: prompts that arrive together share a run', () => {
  let fixture: Fixture
  let stage: ShardSession
  let alone: ShardSession
  const runs: RunLog = []
  before(async () => {
    fixture = await loadFixture('docs-llama-7m')
    const L = parseModelConfig(await fileModelSource(fixture.dir).readText('config.json')).numLayers
    stage = await openStage(fixture, { start: 0, end: L }, { maxBatch: 16, onRun: (rows, positions) => runs.push({ rows, positions }) })
    alone = await openStage(fixture, { start: 0, end: L }, { maxBatch: 1, onRun: () => undefined })
  })
  after(async () => {
    await stage.dispose()
    await alone.dispose()
  })

  test('new sessions whose prompts arrive together run as one, each with the logits it gets alone', async () => {
    const p0 = fixture.prompts[0]!
    const p1 = fixture.prompts[1]!
    runs.length = 0
    // X wants every position's logits, Y only the last one's.
    const firstX = p0.input_ids.slice(0, 6)
    const firstY = p1.input_ids.slice(0, 6)
    const [bx, by] = await Promise.all([stage.forward('X', { tokens: firstX }, { reset: true, allLogits: true }), stage.forward('Y', { tokens: firstY }, { reset: true })])
    assert.deepEqual(runs, [{ rows: 2, positions: 6 }], 'one run of two rows of six positions')
    const ax = await alone.forward('X', { tokens: firstX }, { reset: true, allLogits: true })
    const ay = await alone.forward('Y', { tokens: firstY }, { reset: true })
    assert.equal(bx.logitRows, 6)
    assert.equal(by.logitRows, 1)
    assert.ok(maxAbsDiff(bx.logits!, ax.logits!) < 1e-4, `X: logits differ from alone by ${maxAbsDiff(bx.logits!, ax.logits!)}`)
    assert.ok(maxAbsDiff(by.logits!, ay.logits!) < 1e-4, `Y: logits differ from alone by ${maxAbsDiff(by.logits!, ay.logits!)}`)
    // Their caches came back out of the run intact: a decode step each, then the rest of X's prompt
    // (a session with a past runs alone, beside a new session's prompt), match too.
    runs.length = 0
    const [cx, cy] = await Promise.all([stage.forward('X', { tokens: [7] }), stage.forward('Y', { tokens: [9] })])
    const [rx, z] = await Promise.all([stage.forward('X', { tokens: p0.input_ids.slice(6) }), stage.forward('Z', { tokens: p0.input_ids.slice(6) }, { reset: true })])
    assert.deepEqual(runs, [{ rows: 2, positions: 1 }, { rows: 1, positions: p0.input_ids.length - 6 }, { rows: 1, positions: p0.input_ids.length - 6 }])
    const dx = await alone.forward('X', { tokens: [7] })
    const dy = await alone.forward('Y', { tokens: [9] })
    const ex = await alone.forward('X', { tokens: p0.input_ids.slice(6) })
    const ez = await alone.forward('Z', { tokens: p0.input_ids.slice(6) }, { reset: true })
    for (const [label, b, a] of [['X step', cx, dx], ['Y step', cy, dy], ['X rest', rx, ex], ['Z', z, ez]] as const) {
      assert.ok(maxAbsDiff(b.logits!, a.logits!) < 1e-4, `${label}: logits differ from alone by ${maxAbsDiff(b.logits!, a.logits!)}`)
    }
  })

  test('prompts of different lengths do not share a run', async () => {
    runs.length = 0
    await Promise.all([stage.forward('U', { tokens: [1, 2, 3] }, { reset: true }), stage.forward('V', { tokens: [4, 5, 6, 7, 8] }, { reset: true })])
    assert.deepEqual(runs, [{ rows: 1, positions: 3 }, { rows: 1, positions: 5 }])
  })
})
