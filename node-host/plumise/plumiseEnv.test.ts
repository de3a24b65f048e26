import assert from 'node:assert/strict'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { test } from 'node:test'
import { loadPlumiseEnv, plumiseDevice, PlumiseEnvError } from './plumiseEnv.ts'

test('upstream .env names are read, the process environment wins over the file', () => {
  const dir = mkdtempSync(join(tmpdir(), 'plumise-env-'))
  const file = join(dir, '.env')
  writeFileSync(file, 'MODEL_NAME=owner/model\nGRPC_PORT=50052\nAPI_PORT=31332\nLAYER_START=4\nLAYER_END=8\nORACLE_API_URL=http://oracle:3100\nPLUMISE_PRIVATE_KEY=0xabc\n')
  const env: Record<string, string | undefined> = { GRPC_PORT: '50060' }
  const e = loadPlumiseEnv(env, file)
  assert.deepEqual([e.MODEL_NAME, e.GRPC_PORT, e.API_PORT, e.LAYER_START, e.LAYER_END, e.ORACLE_API_URL], ['owner/model', 50060, 31332, 4, 8, 'http://oracle:3100'])
  assert.equal(env.PLUMISE_PRIVATE_KEY, '0xabc', 'names used elsewhere (wallet, chain) are loaded into the environment')
})

test('defaults are upstream\'s, and bad values name the variable', () => {
  const e = loadPlumiseEnv({}, '/nonexistent/.env')
  assert.deepEqual([e.GRPC_PORT, e.API_PORT, e.ORACLE_API_URL, e.DEVICE], [50051, 31331, 'http://localhost:3100', 'auto'])
  assert.throws(() => loadPlumiseEnv({ GRPC_PORT: 'x' }, '/nonexistent/.env'), (err: Error) => err instanceof PlumiseEnvError && /GRPC_PORT/.test(err.message))
  assert.throws(() => loadPlumiseEnv({ LAYER_START: '3' }, '/nonexistent/.env'), /LAYER_START and LAYER_END go together/)
  assert.throws(() => loadPlumiseEnv({ LAYER_START: '5', LAYER_END: '2' }, '/nonexistent/.env'), /below LAYER_END/)
  assert.deepEqual(['cuda', 'cuda:1', 'mps', 'cpu', 'auto', 'weird'].map(plumiseDevice), ['webgpu', 'webgpu', 'webgpu', 'cpu', 'auto', 'auto'])
})
