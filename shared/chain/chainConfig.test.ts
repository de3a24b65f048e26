import assert from 'node:assert/strict'
import { test } from 'node:test'
import { devnetFileSchema, PLUMISE_MAINNET, resolveChainConfig, UnknownChainError, viemChainOf } from './chainConfig.ts'

const file = {
  rpcUrl: 'http://127.0.0.1:8545',
  chainId: 31337,
  contracts: { agentRegistry: '0x5fbdb2315678afecb367f032d93f642f64180aa3', rewardPool: '0xe7f1725e7734ce288f8367e1bb143e90bb3f0512' },
  precompiles: {
    verifyInference: '0x0000000000000000000000000000000000000020',
    agentRegister: '0x0000000000000000000000000000000000000021',
    agentHeartbeat: '0x0000000000000000000000000000000000000022',
    claimReward: '0x0000000000000000000000000000000000000023',
  },
  verifyInferenceLayout: 'agent-last',
  blocksPerEpoch: 60,
  accounts: { deployer: '0xf39fd6e51aad88f6f4ce6ab8827279cfffb92266', oracle: '0x70997970c51812dc3a010c7d01b50e0d17dc79c8' },
}

test('Plumise mainnet and testnet: legacy transactions, spec addresses, the genesis pool\'s 4-argument report', () => {
  const main = resolveChainConfig({ chainId: 41956 })
  assert.deepEqual(main, PLUMISE_MAINNET)
  assert.equal(main.contracts.rewardPool, '0x0000000000000000000000000000000000001000')
  assert.equal(main.contracts.agentRegistry.toLowerCase(), '0xc9cf64344d22f02f6cdb8e7b5349f30e09f9043c')
  assert.equal(main.legacyTransactions, true)
  assert.equal(main.reportContributionArity, 4)
  assert.equal(main.verifyInferenceLayout, 'agent-last')
  assert.equal(resolveChainConfig({ chainId: 419561 }).name, 'Plumise Testnet')
  assert.equal(resolveChainConfig({ chainId: 41956, overrides: { verifyInferenceLayout: 'agent-first' } }).verifyInferenceLayout, 'agent-first')
})

test('a devnet comes from its addresses file (validated, addresses checksummed)', () => {
  const devnet = devnetFileSchema.parse(file)
  assert.equal(devnet.contracts.rewardPool, '0xe7f1725E7734CE288F8367e1Bb143E90bb3F0512')
  const config = resolveChainConfig({ chainId: 31337, devnet })
  assert.equal(config.kind, 'devnet')
  assert.equal(config.legacyTransactions, false)
  assert.equal(config.reportContributionArity, 6)
  assert.throws(() => resolveChainConfig({ chainId: 1, devnet }), UnknownChainError)
  assert.throws(() => devnetFileSchema.parse({ ...file, contracts: { ...file.contracts, rewardPool: '0x12' } }))
  assert.throws(() => devnetFileSchema.parse({ ...file, verifyInferenceLayout: 'sideways' }))
  assert.equal(viemChainOf(config, file.rpcUrl).id, 31337)
})
