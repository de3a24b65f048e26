import assert from 'node:assert/strict'
import { after, before, test } from 'node:test'
import { createPublicClient, encodeFunctionData, parseEther } from 'viem'
import { getBalance, getBlockNumber, sendTransaction } from 'viem/actions'
import { agentRegistryAbi } from '../../shared/chain/abis.ts'
import { ChainActionError } from '../../shared/chain/errors.ts'
import { replayRevertReason } from '../../shared/chain/replayRevertReason.ts'
import { transact } from '../../shared/chain/transact.ts'
import { chainHttp } from '../../shared/chain/chainHttp.ts'
import { startAnvil } from './startAnvil.ts'
import { startDevnet, type Devnet } from './startDevnet.ts'

// npm start's devnet runs anvil without historical state (its memory grew ~1 GB/h in the soak with it).
let pruned: Devnet
let full: Devnet

before(async () => {
  ;[pruned, full] = await Promise.all([startDevnet({ blockTime: 0, pruneHistory: true }), startDevnet({ blockTime: 0 })])
  // a few blocks past the deployment
  for (const d of [pruned, full]) {
    const w = d.walletClient(d.accounts.deployer)
    for (let i = 0; i < 3; i++) await sendTransaction(w, { to: d.accounts.others[0]!.address, value: parseEther('1') })
  }
})
after(async () => {
  await pruned?.close()
  await full?.close()
})

test('pruneHistory: anvil answers the latest state only; the default devnet keeps every block\'s', async () => {
  const address = pruned.accounts.others[0]!.address
  const reader = pruned.walletClient(pruned.accounts.deployer)
  const latest = await getBlockNumber(reader, { cacheTime: 0 })
  assert.ok(latest > 3n)
  assert.equal(await getBalance(reader, { address }), await getBalance(full.walletClient(full.accounts.deployer), { address }))
  await assert.rejects(getBalance(reader, { address, blockNumber: latest - 2n }))
  assert.equal(await getBalance(full.walletClient(full.accounts.deployer), { address, blockNumber: 1n }), parseEther('10000'))
})

test('a mined revert still gives its reason on a pruned devnet: replayed at the latest block when its own is gone', async () => {
  const stranger = pruned.walletClient(pruned.accounts.others[1]!)
  const data = encodeFunctionData({ abi: agentRegistryAbi, functionName: 'heartbeat' })
  const old = (await getBlockNumber(stranger, { cacheTime: 0 })) - 2n
  const reason = await replayRevertReason(stranger, { account: stranger.account, to: pruned.contracts.agentRegistry, data, blockNumber: old })
  assert.equal(reason, 'AgentRegistry: agent not registered')
  // and through transact: an explicit gas limit skips estimation, so the revert is mined and replayed
  await assert.rejects(
    transact(stranger, 'heartbeat', { config: pruned.config, to: pruned.contracts.agentRegistry, data, gas: 100_000n }),
    (e: unknown) => e instanceof ChainActionError && e.hash !== undefined && e.reason === 'AgentRegistry: agent not registered',
  )
})

test('reads at "latest" while a pruned anvil mines a block a second all succeed through chainHttp', async () => {
  // Without the retry about 1 read in 1,600 raced the next block and was refused (BlockOutOfRangeError).
  const anvil = await startAnvil({ blockTime: 1, pruneHistory: true })
  try {
    const client = createPublicClient({ transport: chainHttp(anvil.rpcUrl, { retryCount: 0 }) })
    const address = pruned.accounts.others[2]!.address
    const end = Date.now() + 8000
    let reads = 0
    while (Date.now() < end) {
      await Promise.all(Array.from({ length: 8 }, () => getBalance(client, { address })))
      reads += 8
    }
    assert.ok(reads > 500, `${reads} reads`)
  } finally {
    await anvil.close()
  }
})
