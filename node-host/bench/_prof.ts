import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { createStepLog } from '../../shared/verify/stepLog.ts'
const key = await generateKeyPair('Ed25519')
const V = Number(process.argv[2] ?? 8192)
const sessions = Number(process.argv[3] ?? 1)
const log = createStepLog({ signer: { peerId: peerIdFromPrivateKey(key).toString(), sign: (d) => key.sign(d) }, model: 'm', hiddenSize: 256 })
const hidden = new Float32Array(256).map(() => Math.random())
const hin = new Uint8Array(512)
const logits = new Float32Array(V).map(() => Math.random())
for (let s = 0; s < sessions; s++) log.record({ origin: 'o', sessionId: 'x' + s, range: { start: 0, end: 3 }, step: 0n, chunkIndex: 0, input: { case: 'tokens', value: { $typeName: 'shardmesh.mesh.v1.TokenIds', ids: [1, 2, 3] } } as any, output: { hidden, length: 1 } as any, start: true })
for (const [name, out, input] of [['hidden', { hidden, length: 5 }, { case: 'hidden', value: { $typeName: 'shardmesh.mesh.v1.HiddenState', data: hin, dims: [1, 1, 256], dtype: 1 } }], ['logits', { logits, length: 5 }, { case: 'hidden', value: { $typeName: 'shardmesh.mesh.v1.HiddenState', data: hin, dims: [1, 1, 256], dtype: 1 } }]] as const) {
  const N = 3000
  for (let i = 0; i < 200; i++) log.record({ origin: 'o', sessionId: 's', range: { start: 0, end: 3 }, step: BigInt(i), chunkIndex: 0, input: input as any, output: out as any, start: i === 0 })
  const t0 = performance.now()
  for (let i = 0; i < N; i++) log.record({ origin: 'o', sessionId: 's', range: { start: 0, end: 3 }, step: BigInt(i), chunkIndex: 0, input: input as any, output: out as any, start: i === 0 })
  console.log(name, ((performance.now() - t0) / N * 1000).toFixed(1), 'µs/record', 'sessions', sessions)
}
