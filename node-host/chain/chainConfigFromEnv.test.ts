import assert from 'node:assert/strict'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, test } from 'node:test'
import { chainConfigFromEnv } from './chainConfigFromEnv.ts'
import { writeDevnetFile } from './devnetFile.ts'

const dirs: string[] = []
after(() => Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true }))))

test('Plumise by default, with the spec\'s RPC URL; overrides where the sources disagree', async () => {
  const main = await chainConfigFromEnv({})
  assert.equal(main.config.chainId, 41956)
  assert.equal(main.rpcUrl, 'http://localhost:26902')
  assert.equal(main.config.legacyTransactions, true)
  const test = await chainConfigFromEnv({ PLUMISE_CHAIN_ID: '419561', PLUMISE_RPC_URL: 'http://10.0.0.1:8545', PLUMISE_VERIFY_LAYOUT: 'agent-first', PLUMISE_REPORT_ARITY: '6' })
  assert.equal(test.config.name, 'Plumise Testnet')
  assert.equal(test.rpcUrl, 'http://10.0.0.1:8545')
  assert.equal(test.config.verifyInferenceLayout, 'agent-first')
  assert.equal(test.config.reportContributionArity, 6)
  await assert.rejects(chainConfigFromEnv({ PLUMISE_VERIFY_LAYOUT: 'middle' }), /PLUMISE_VERIFY_LAYOUT/)
  await assert.rejects(chainConfigFromEnv({ PLUMISE_REWARD_POOL: '0x1' }), /PLUMISE_REWARD_POOL/)
})

test('another chain id is a devnet, read from its addresses file', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'shardmesh-env-'))
  dirs.push(dir)
  const file = join(dir, 'devnet.json')
  const registry = '0x5FbDB2315678afecb367f032d93F642f64180aa3'
  await writeDevnetFile(file, {
    rpcUrl: 'http://127.0.0.1:9545',
    chainId: 31337,
    contracts: { agentRegistry: registry, rewardPool: '0xe7f1725E7734CE288F8367e1Bb143E90bb3F0512' },
    precompiles: { verifyInference: '0x0000000000000000000000000000000000000020', agentRegister: '0x0000000000000000000000000000000000000021', agentHeartbeat: '0x0000000000000000000000000000000000000022', claimReward: '0x0000000000000000000000000000000000000023' },
    verifyInferenceLayout: 'agent-last',
    blocksPerEpoch: 60,
    accounts: { deployer: '0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266', oracle: '0x70997970C51812dc3A010C7d01b50e0d17dc79C8' },
  })
  const devnet = await chainConfigFromEnv({ PLUMISE_CHAIN_ID: '31337', SHARDMESH_DEVNET_FILE: file })
  assert.equal(devnet.config.kind, 'devnet')
  assert.equal(devnet.rpcUrl, 'http://127.0.0.1:9545')
  assert.equal(devnet.config.contracts.agentRegistry, registry)
  await assert.rejects(chainConfigFromEnv({ PLUMISE_CHAIN_ID: '1', SHARDMESH_DEVNET_FILE: file }), /neither Plumise/)
  await assert.rejects(chainConfigFromEnv({ PLUMISE_CHAIN_ID: '31337', SHARDMESH_DEVNET_FILE: join(dir, 'none.json') }), /unreadable \(start one with `npx shardmesh devnet`\)/)
})
