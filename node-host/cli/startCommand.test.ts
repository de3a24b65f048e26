import assert from 'node:assert/strict'
import { test } from 'node:test'
import { parseStartArgs } from './startCommand.ts'
import { UsageError } from './usageError.ts'

test('--grpc-via relays a --layers range to a Plumise node, in bfloat16 unless told', () => {
  const o = parseStartArgs(['--layers', '3-6', '--grpc-via', 'http://127.0.0.1:50051'])
  assert.equal(o.grpcVia, 'http://127.0.0.1:50051')
  assert.equal(o.grpcViaDtype, 'bfloat16')
  assert.equal(parseStartArgs(['--layers', '3-6', '--grpc-via', 'http://h:1', '--grpc-via-dtype', 'float32']).grpcViaDtype, 'float32')
})

test('--grpc-via is refused where it cannot apply, and with a bad URL or dtype', () => {
  for (const argv of [
    ['--oracle', 'http://127.0.0.1:3100', '--grpc-via', 'http://h:1'],
    ['--layers', '3-6', '--grpc-port', '50051', '--grpc-via', 'http://h:1'],
    ['--plumise', '--grpc-via', 'http://h:1'],
    ['--layers', '3-6', '--grpc-via', 'ftp://h:1'],
    ['--layers', '3-6', '--grpc-via', 'http://h:1', '--grpc-via-dtype', 'int8'],
  ]) {
    assert.throws(() => parseStartArgs(argv), UsageError, argv.join(' '))
  }
})
