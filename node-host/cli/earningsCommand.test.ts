import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { mkdtemp } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { test } from 'node:test'
import { promisify } from 'node:util'
import { createOrbanMessage } from '../../shared/orban/orbanMessages.ts'
import { openEarningsStore } from '../agent/earningsStore.ts'
import { earningsFile } from './earningsCommand.ts'

const run = promisify(execFile)

test('`shardmesh earnings` prints per task, per day and totals from the data folder', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'earnings-cli-'))
  const store = await openEarningsStore(earningsFile(dir))
  const record = (task_id: string, usd: number, status: 'Pending' | 'Paid') =>
    createOrbanMessage('EARNINGS_RECORD', { task_id, earnings: { gpu_hours: 1, rate_usd_per_hour: usd, amount_usd: usd, bonus_multiplier: 1, final_amount_usd: usd }, status, estimated_payout_date: '2026-12-04' })
  await store.addRecord(record('task-1', 2, 'Pending'))
  await store.addRecord(record('task-2', 1.5, 'Pending'))
  // The same task booked again (now paid) replaces its record.
  await store.addRecord(record('task-2', 1.5, 'Paid'))
  const { stdout } = await run(process.execPath, ['node-host/cli/main.ts', 'earnings', '--data-dir', dir])
  assert.match(stdout, /task-1 .* \$2\.000000 {2}Pending/)
  assert.match(stdout, /task-2 .* \$1\.500000 {2}Paid/)
  const today = new Date().toISOString().slice(0, 10)
  assert.match(stdout, new RegExp(`${today} +2 tasks +2\\.0000 gpu hours +\\$3\\.500000`))
  assert.match(stdout, /total \$3\.500000 {2}today \$3\.500000 {2}pending \$2\.000000/)
  const json = JSON.parse((await run(process.execPath, ['node-host/cli/main.ts', 'earnings', '--data-dir', dir, '--json'])).stdout) as { totalUsd: number }
  assert.equal(json.totalUsd, 3.5)
})
