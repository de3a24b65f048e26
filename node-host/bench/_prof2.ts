import { toBinary, create } from '@bufbuild/protobuf'
import { sha256 } from '@noble/hashes/sha2.js'
import { bytesToHex } from '@noble/hashes/utils.js'
import { StepInputSchema } from '../../proto/gen/mesh_pb.js'
import { committedRow } from '../../shared/verify/stepLog.ts'
const hidden = new Float32Array(256).map(() => Math.random())
const hin = new Uint8Array(512)
const time = (name: string, f: () => unknown, N = 5000) => { for (let i = 0; i < 500; i++) f(); const t0 = performance.now(); for (let i = 0; i < N; i++) f(); console.log(name, ((performance.now() - t0) / N * 1000).toFixed(2), 'µs') }
const input = create(StepInputSchema, { step: 5n, chunkIndex: 0, input: { case: 'hidden', value: { data: hin, dims: [1, 1, 256], dtype: 1 } as any } })
time('committedRow hidden', () => committedRow({ hidden, length: 5 } as any, 256))
time('committedRow logits4096', () => committedRow({ logits: new Float32Array(4096).map((_, i) => Math.sin(i)), length: 5 } as any, 256), 500)
time('create input', () => create(StepInputSchema, { step: 5n, chunkIndex: 0, input: input.input }))
time('toBinary input', () => toBinary(StepInputSchema, input))
time('sha256 1.5KB', () => sha256(new Uint8Array(1536)))
time('sha256 32KB', () => sha256(new Uint8Array(32768)), 500)
time('bytesToHex', () => bytesToHex(new Uint8Array(32)))
