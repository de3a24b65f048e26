import assert from 'node:assert/strict'
import { test } from 'node:test'
import { parseOriginArgs } from './originCommand.ts'
import { UsageError } from './usageError.ts'

test('origin arguments: --oracle is required and a URL; the API port and host default', () => {
  const o = parseOriginArgs(['--oracle', 'http://127.0.0.1:3100', '--listen', '/ip4/127.0.0.1/tcp/0/ws'])
  assert.equal(o.oracle, 'http://127.0.0.1:3100')
  assert.equal(o.apiPort, 31331)
  assert.equal(o.host, '127.0.0.1')
  assert.deepEqual(o.listen, ['/ip4/127.0.0.1/tcp/0/ws'])
  assert.equal(parseOriginArgs(['--oracle', 'http://o:1', '--api-port', '0']).apiPort, 0)
  const env = process.env.ORACLE_URL
  delete process.env.ORACLE_URL
  try {
    assert.throws(() => parseOriginArgs([]), UsageError)
  } finally {
    if (env !== undefined) process.env.ORACLE_URL = env
  }
  assert.throws(() => parseOriginArgs(['--oracle', 'ftp://o']), UsageError)
  assert.throws(() => parseOriginArgs(['--oracle', 'http://o:1', '--api-port', '70000']), UsageError)
})
