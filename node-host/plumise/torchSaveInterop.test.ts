import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { test } from 'node:test'
import { decodePlumiseHidden } from './plumiseTensor.ts'
import { PlumiseTensorError } from './plumiseTensorError.ts'
import { PickleRefusedError } from './restrictedUnpickle.ts'
import { readTorchArchive } from './torchArchive.ts'

const dir = join(import.meta.dirname, 'testdata')
const read = (name: string) => new Uint8Array(readFileSync(join(dir, name)))

const hasPython = (() => {
  try {
    execFileSync('python3', ['--version'], { stdio: 'ignore' })
    return true
  } catch {
    return false
  }
})()

/** An independent decode of the storage (python zipfile + struct), from `offset`, `count` values of `fmt`. */
function pythonValues(name: string, fmt: 'bf16' | 'f16' | 'f32', offset: number, count: number): number[] {
  const script = `
import sys, zipfile, struct, json
z = zipfile.ZipFile(sys.argv[1]); d = z.read('archive/data/0')
fmt, off, n = sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
if fmt == 'bf16':
    hs = struct.unpack('<%dH' % (len(d) // 2), d)[off:off + n]
    print(json.dumps([struct.unpack('<f', struct.pack('<I', h << 16))[0] for h in hs]))
elif fmt == 'f16':
    print(json.dumps(list(struct.unpack('<%de' % (len(d) // 2), d)[off:off + n])))
else:
    print(json.dumps(list(struct.unpack('<%df' % (len(d) // 4), d)[off:off + n])))
`
  return JSON.parse(execFileSync('python3', ['-c', script, join(dir, name), fmt, String(offset), String(count)], { encoding: 'utf8' })) as number[]
}

test('real torch.save archives (torch 2.11) are read: bfloat16, float16, float32, a view with a storage offset', () => {
  const small = readTorchArchive(read('bf16_small.pt'))
  assert.deepEqual([small.dtype, small.shape], ['bfloat16', [1, 5, 8]])
  const offset = readTorchArchive(read('bf16_offset.pt'))
  assert.deepEqual([offset.dtype, offset.shape, offset.values.length], ['bfloat16', [1, 6, 8], 48])
  const f16 = readTorchArchive(read('f16.pt'))
  const f32 = readTorchArchive(read('f32.pt'))
  assert.deepEqual([f16.dtype, f16.shape, f32.dtype, f32.shape], ['float16', [1, 3, 4], 'float32', [1, 3, 4]])
  for (const t of [small, offset, f16, f32]) assert.ok(t.values.every(Number.isFinite) && t.values.some((v) => v !== 0))
  // as a ForwardRequest's hidden state of width 8
  const h = decodePlumiseHidden({ hiddenStates: read('bf16_small.pt'), shape: [1n, 5n, 8n], dtype: 'bfloat16' }, 8)
  assert.deepEqual([...h.values], [...small.values])
  if (hasPython) {
    assert.deepEqual([...small.values], pythonValues('bf16_small.pt', 'bf16', 0, 40))
    assert.deepEqual([...offset.values], pythonValues('bf16_offset.pt', 'bf16', 48, 48))
    assert.deepEqual([...f16.values], pythonValues('f16.pt', 'f16', 0, 12))
    assert.deepEqual([...f32.values], pythonValues('f32.pt', 'f32', 0, 12))
  }
})

test('what torch.load(weights_only=True) refuses, and non-contiguous views, are refused', () => {
  assert.throws(() => readTorchArchive(read('evil.pt')), (e: Error) => e instanceof PickleRefusedError && /global posix\.system is not allowed/.test(e.message))
  assert.throws(() => readTorchArchive(read('bf16_t.pt')), (e: Error) => e instanceof PlumiseTensorError && /only contiguous/.test(e.message))
})
