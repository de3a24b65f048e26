import assert from 'node:assert/strict'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { test } from 'node:test'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { generatePrivateKey, privateKeyToAccount } from 'viem/accounts'
import { PRECOMPILES } from '../../shared/chain/precompiles.ts'
import { silentLogger } from '../../shared/logger.ts'
import { writeDevnetFile } from '../chain/devnetFile.ts'
import { chainAgentFromEnv, NO_COUNTERS } from './chainAgentFromEnv.ts'

test('the chain agent is on with a wallet, off without one, and names the variable it cannot read', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'chain-agent-env-'))
  t.after(() => rm(dir, { recursive: true, force: true }))
  const file = join(dir, 'devnet.json')
  const zero = '0x00000000000000000000000000000000000000aa' as const
  await writeDevnetFile(file, {
    rpcUrl: 'http://127.0.0.1:1',
    chainId: 31337,
    contracts: { agentRegistry: zero, rewardPool: zero },
    precompiles: { ...PRECOMPILES },
    verifyInferenceLayout: 'agent-last',
    blocksPerEpoch: 10,
    accounts: { deployer: zero, oracle: zero },
  })
  const key = await generateKeyPair('Ed25519')
  const base = { peer: { peerId: peerIdFromPrivateKey(key).toString(), privateKey: key }, stats: () => NO_COUNTERS, logger: silentLogger }
  const wallet = generatePrivateKey()
  const env = { PLUMISE_PRIVATE_KEY: wallet, PLUMISE_CHAIN_ID: '31337', SHARDMESH_DEVNET_FILE: file }

  assert.equal(await chainAgentFromEnv({ ...base, env: {} }), undefined)
  const agent = await chainAgentFromEnv({ ...base, env: { ...env, REPORT_INTERVAL: '2', CLAIM_THRESHOLD_WEI: '1e18', ORACLE_API_URL: 'http://127.0.0.1:3100' } })
  assert.equal(agent?.address, privateKeyToAccount(wallet).address)
  await assert.rejects(chainAgentFromEnv({ ...base, env: { ...env, REPORT_INTERVAL: 'soon' } }), /REPORT_INTERVAL/)
  await assert.rejects(chainAgentFromEnv({ ...base, env: { ...env, CLAIM_THRESHOLD_WEI: '0.5' } }), /CLAIM_THRESHOLD_WEI/)
  await assert.rejects(chainAgentFromEnv({ ...base, env: { ...env, PLUMISE_PRIVATE_KEY: '0x1234' } }), /PLUMISE_PRIVATE_KEY/)
  await assert.rejects(chainAgentFromEnv({ ...base, env: { ...env, SHARDMESH_DEVNET_FILE: join(dir, 'missing.json') } }), /missing\.json/)
})
