import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { mkdtemp } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { test } from 'node:test'
import { promisify } from 'node:util'
import { fileModelSource } from '../model/fileModelSource.ts'
import { openSafetensorsFile, readTensors, toFloat32 } from '../../shared/model/safetensors.ts'
import { loadFixture, logitTolerance, maxAbsDiff, REPO_ROOT } from '../../testing/fixtures.ts'

const run = promisify(execFile)
const BIN = join(REPO_ROOT, 'node-host', 'bin', 'shardmesh.js')

async function shardmesh(args: string[]): Promise<{ stdout: string; stderr: string; code: number }> {
  try {
    const { stdout, stderr } = await run(process.execPath, [BIN, ...args], { cwd: REPO_ROOT })
    return { stdout, stderr, code: 0 }
  } catch (e) {
    const err = e as { stdout: string; stderr: string; code: number }
    return { stdout: err.stdout, stderr: err.stderr, code: err.code }
  }
}

test('shardmesh generate --json on the shipped default model gives the reference greedy tokens, in stages', async () => {
  const fixture = await loadFixture('docs-llama-7m')
  const p = fixture.prompts[0]!
  const dir = await mkdtemp(join(tmpdir(), 'shardmesh-cli-'))
  const logitsOut = join(dir, 'logits.safetensors')
  const r = await shardmesh(['generate', '--prompt', p.prompt, '--max-new-tokens', String(p.new_tokens), '--stages', '0-3,3-8', '--device', 'cpu', '--json', '--logits-out', logitsOut])
  assert.equal(r.code, 0, r.stderr)
  const out = JSON.parse(r.stdout) as Record<string, unknown>
  assert.equal(out.model, 'docs-llama-7m')
  assert.equal(out.device, 'cpu')
  assert.deepEqual(out.stages, [[0, 3], [3, 8]])
  assert.deepEqual(out.input_ids, p.input_ids)
  assert.deepEqual(out.output_ids, p.greedy_new_ids)
  assert.equal(out.text, p.greedy_text)
  const timings = out.timings as Record<string, number>
  for (const k of ['load_ms', 'prefill_ms', 'decode_ms_per_token']) assert.ok(timings[k]! > 0, k)

  const written = await openSafetensorsFile(fileModelSource(dir), 'logits.safetensors')
  assert.deepEqual(written.tensors.get('logits')!.shape, [p.input_ids.length, 4096])
  assert.deepEqual(written.tensors.get('decode_logits')!.shape, [p.new_tokens, 4096])
  const mine = await readTensors(written, ['logits', 'decode_logits'])
  const ref = await fixture.reference(['p0.logits', 'p0.decode_logits'])
  assert.ok(maxAbsDiff(toFloat32(mine.get('logits')!), ref.get('p0.logits')!) < logitTolerance('docs-llama-7m'))
  assert.ok(maxAbsDiff(toFloat32(mine.get('decode_logits')!), ref.get('p0.decode_logits')!) < logitTolerance('docs-llama-7m'))
})

test('shardmesh generate stops at the end-of-sequence token', async () => {
  const p = (await loadFixture('docs-llama-7m')).prompts[1]!
  const eosAt = p.greedy_new_ids.indexOf(0)
  assert.ok(eosAt > 0, 'the reference continuation contains <|endoftext|>')
  const r = await shardmesh(['generate', '--prompt', p.prompt, '--max-new-tokens', '48', '--device', 'cpu', '--json'])
  assert.equal(r.code, 0, r.stderr)
  assert.deepEqual(JSON.parse(r.stdout).output_ids, p.greedy_new_ids.slice(0, eosAt + 1))
})

test('shardmesh generate streams text without --json and samples reproducibly with a seed', async () => {
  const plain = await shardmesh(['generate', '--prompt', 'The model', '--max-new-tokens', '12', '--device', 'cpu'])
  assert.equal(plain.code, 0, plain.stderr)
  assert.ok(plain.stdout.trim().length > 0)
  assert.match(plain.stderr, /decode [\d.]+ ms\/token/)
  const args = ['generate', '--prompt', 'The model', '--max-new-tokens', '16', '--device', 'cpu', '--json', '--temperature', '1', '--top-p', '0.95']
  const a = JSON.parse((await shardmesh([...args, '--seed', '5'])).stdout).output_ids
  const b = JSON.parse((await shardmesh([...args, '--seed', '5'])).stdout).output_ids
  const c = JSON.parse((await shardmesh([...args, '--seed', '6'])).stdout).output_ids
  assert.deepEqual(a, b)
  assert.notDeepEqual(a, c)
})

test('bad arguments are clear errors with a non-zero exit', async () => {
  const cases: Array<[string[], RegExp]> = [
    [['generate', '--max-new-tokens', '3'], /--prompt is required/],
    [['generate', '--prompt', 'x', '--device', 'gpu'], /--device/],
    [['generate', '--prompt', 'x', '--stages', '0-3,4-8', '--device', 'cpu'], /contiguous/],
    [['generate', '--prompt', 'x', '--stages', '0-9', '--device', 'cpu'], /outside \[0, 8\)/],
    [['generate', '--prompt', 'x', '--model', '/no/such/folder'], /neither a folder/],
    [['generate', '--prompt', 'x', '--bogus'], /Unknown option '--bogus'/],
    [['frobnicate'], /unknown command "frobnicate"/],
  ]
  for (const [args, message] of cases) {
    const r = await shardmesh(args)
    assert.notEqual(r.code, 0, args.join(' '))
    assert.match(r.stderr, message, args.join(' '))
  }
})
