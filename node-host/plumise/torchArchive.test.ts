import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { test } from 'node:test'
import { PlumiseTensorError } from './plumiseTensorError.ts'
import { PickleRefusedError } from './restrictedUnpickle.ts'
import { readStoredZip, writeStoredZip } from './storedZip.ts'
import { readTorchArchive, writeTorchArchive } from './torchArchive.ts'

const values = Float32Array.from({ length: 2 * 3 * 4 }, (_, i) => (i - 7) * 0.25) // exact in bfloat16
const shape = [2, 3, 4]

const hasPython = (() => {
  try {
    execFileSync('python3', ['--version'], { stdio: 'ignore' })
    return true
  } catch {
    return false
  }
})()

test('the archive has torch.save layout: data.pkl, byteorder, data/0 (raw bf16, 64-aligned), version', () => {
  const bytes = writeTorchArchive({ values, shape })
  const files = readStoredZip(bytes)
  assert.deepEqual([...files.keys()], ['archive/data.pkl', 'archive/byteorder', 'archive/data/0', 'archive/version'])
  assert.equal(new TextDecoder().decode(files.get('archive/byteorder')), 'little')
  assert.equal(new TextDecoder().decode(files.get('archive/version')), '3\n')
  const data = files.get('archive/data/0')!
  assert.equal(data.length, values.length * 2)
  assert.equal(data.byteOffset % 64, 0, 'storage data aligned to 64 bytes as PyTorch writes it')
  // bf16 of 1.0 is 0x3f80: the upper half of float32 1.0 (index 11 holds (11-7)*0.25 = 1)
  assert.deepEqual([data[22], data[23]], [0x80, 0x3f])
  const pkl = String.fromCharCode(...files.get('archive/data.pkl')!)
  assert.ok(pkl.startsWith('\x80\x02ctorch._utils\n_rebuild_tensor_v2\n'))
  assert.ok(pkl.includes('ctorch\nBFloat16Storage\n'))
  assert.ok(pkl.includes('ccollections\nOrderedDict\n'))
  assert.ok(pkl.endsWith('tR.'))
})

test('write then read gives the tensor back', () => {
  const t = readTorchArchive(writeTorchArchive({ values, shape }))
  assert.deepEqual(t.shape, shape)
  assert.equal(t.dtype, 'bfloat16')
  assert.deepEqual([...t.values], [...values])
  // large element counts use the wider integer opcodes
  const big = new Float32Array(70_000).fill(0.5)
  const back = readTorchArchive(writeTorchArchive({ values: big, shape: [1, 70_000] }))
  assert.deepEqual(back.shape, [1, 70_000])
  assert.equal(back.values[69_999], 0.5)
})

test('python3 zipfile + pickletools parse the archive as torch.load(weights_only=True) expects', { skip: !hasPython && 'python3 not installed' }, () => {
  const dir = mkdtempSync(join(tmpdir(), 'torch-archive-'))
  const file = join(dir, 't.pt')
  writeFileSync(file, writeTorchArchive({ values, shape }))
  const script = `
import sys, zipfile, pickletools, struct, json
z = zipfile.ZipFile(sys.argv[1])
assert z.testzip() is None, 'bad CRC'
names = z.namelist()
pkl = z.read('archive/data.pkl')
ops = [(op.name, arg) for op, arg, pos in pickletools.genops(pkl)]
pickletools.dis(pkl, out=open('/dev/null', 'w'))  # raises on a malformed pickle
globals_ = [arg.replace(' ', '.') for name, arg in ops if name == 'GLOBAL']
allowed = {'torch._utils._rebuild_tensor_v2', 'torch.BFloat16Storage', 'collections.OrderedDict'}
assert set(globals_) <= allowed, globals_
assert 'BINPERSID' in [n for n, _ in ops]
strings = [a for n, a in ops if n == 'BINUNICODE']
assert strings == ['storage', '0', 'cpu'], strings
data = z.read('archive/data/0')
halves = struct.unpack('<%dH' % (len(data) // 2), data)
floats = [struct.unpack('<f', struct.pack('<I', h << 16))[0] for h in halves]
info = z.getinfo('archive/data/0')
print(json.dumps({'names': names, 'globals': globals_, 'floats': floats, 'compress': info.compress_type, 'version': z.read('archive/version').decode()}))
`
  const out = JSON.parse(execFileSync('python3', ['-c', script, file], { encoding: 'utf8' })) as { names: string[]; globals: string[]; floats: number[]; compress: number; version: string }
  assert.deepEqual(out.names, ['archive/data.pkl', 'archive/byteorder', 'archive/data/0', 'archive/version'])
  assert.deepEqual(out.globals, ['torch._utils._rebuild_tensor_v2', 'torch.BFloat16Storage', 'collections.OrderedDict'])
  assert.deepEqual(out.floats, [...values])
  assert.equal(out.compress, 0)
  assert.equal(out.version, '3\n')
})

/** Builds an archive whose pickle is `pkl` (with a valid storage record). */
const withPickle = (pkl: string, data = new Uint8Array(4)) =>
  writeStoredZip([
    { name: 'archive/data.pkl', data: Uint8Array.from(pkl, (c) => c.charCodeAt(0)) },
    { name: 'archive/data/0', data },
    { name: 'archive/version', data: new TextEncoder().encode('3\n') },
  ])

test('globals outside the weights_only allow-list are refused with a clear error', () => {
  // The classic exploit: os.system("...") through REDUCE.
  const evil = withPickle('\x80\x02cos\nsystem\nX\x02\x00\x00\x00idq\x00\x85R.')
  assert.throws(() => readTorchArchive(evil), (e: Error) => e instanceof PickleRefusedError && /global os\.system is not allowed/.test(e.message))
  const builtins = withPickle('\x80\x02cbuiltins\neval\n.')
  assert.throws(() => readTorchArchive(builtins), PickleRefusedError)
  // BUILD / INST / OBJ are not part of what this reader runs
  assert.throws(() => readTorchArchive(withPickle('\x80\x02}b.')), /opcode 0x62 is not allowed/)
})

test('malformed archives are refused, never crash', () => {
  const good = writeTorchArchive({ values, shape })
  const cases: [string, Uint8Array][] = [
    ['empty', new Uint8Array(0)],
    ['not a zip', new TextEncoder().encode('hello world, this is not a zip archive')],
    ['truncated', good.subarray(0, good.length - 30)],
    ['flipped data byte (CRC)', (() => { const b = good.slice(); b[200] ^= 0xff; return b })()],
    ['truncated pickle', withPickle('\x80\x02ctorch._utils\n_rebuild_tensor_v2\n(')],
    ['not a tensor', withPickle('\x80\x02K\x01.')],
    ['storage bigger than its record', (() => {
      const files = readStoredZip(good)
      return writeStoredZip([...files].map(([name, data]) => ({ name, data: name.endsWith('data/0') ? data.subarray(0, 10) : data })))
    })()],
  ]
  for (const [why, bytes] of cases) assert.throws(() => readTorchArchive(bytes), PlumiseTensorError, why)
  assert.throws(() => readTorchArchive(good, { maxBytes: 100 }), /over the 100-byte limit/)
  assert.throws(() => readTorchArchive(good, { maxElements: 10 }), /over the limit of 10/)
})
