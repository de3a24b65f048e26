import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { mkdtemp, readdir, rm, stat } from 'node:fs/promises'
import { availableParallelism, tmpdir } from 'node:os'
import { join } from 'node:path'
import { test } from 'node:test'
import { promisify } from 'node:util'
import { loadFixture, REPO_ROOT } from '../../testing/fixtures.ts'

const run = promisify(execFile)
const BIN = join(REPO_ROOT, 'node-host', 'bin', 'shardmesh.js')

type Summary = { threads: number; output_ids: number[]; timings: { load_ms: number } }

test('shardmesh generate runs on every core by default or --threads N, and its second load opens the cached shards', async () => {
  const p = (await loadFixture('docs-llama-7m')).prompts[0]!
  const cache = await mkdtemp(join(tmpdir(), 'generate-cache-'))
  try {
    const env: NodeJS.ProcessEnv = { ...process.env, SHARDMESH_CACHE_DIR: cache }
    delete env.SHARDMESH_THREADS
    // Each stored shard's weights file and when it was written: a rebuild would write it anew.
    const stored = async () => {
      const names = (await readdir(cache)).filter((n) => !n.startsWith('.')).sort()
      return Promise.all(names.map(async (n) => `${n} ${(await stat(join(cache, n, 'weights.bin'))).mtimeMs}`))
    }
    const generate = async (extra: string[]) => {
      const args = [BIN, 'generate', '--prompt', p.prompt, '--max-new-tokens', '8', '--stages', '0-4,4-8', '--device', 'cpu', '--json', ...extra]
      const { stdout } = await run(process.execPath, args, { cwd: REPO_ROOT, env })
      return JSON.parse(stdout) as Summary
    }
    const first = await generate([])
    assert.equal(first.threads, availableParallelism())
    assert.deepEqual(first.output_ids, p.greedy_new_ids.slice(0, 8))
    const built = await stored()
    assert.equal(built.length, 2, 'one stored shard per stage')
    const second = await generate(['--threads', '1'])
    assert.equal(second.threads, 1)
    assert.deepEqual(second.output_ids, first.output_ids)
    assert.deepEqual(await stored(), built, 'the second load built nothing')
  } finally {
    await rm(cache, { recursive: true, force: true })
  }
})
