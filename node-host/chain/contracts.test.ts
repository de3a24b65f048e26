import assert from 'node:assert/strict'
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, afterEach, before, beforeEach, describe, test } from 'node:test'
import {
  concat,
  encodeFunctionData,
  getAddress,
  keccak256,
  numberToHex,
  pad,
  parseEther,
  parseEventLogs,
  stringToHex,
  toEventSelector,
  toFunctionSelector,
  type Abi,
  type Address,
  type Hex,
} from 'viem'
import { call, deployContract, getBalance, getCode, readContract, waitForTransactionReceipt } from 'viem/actions'
import { formatAbiItem } from 'viem/utils'
import { compileContracts, ContractCompileError, type CompiledContracts } from '../../contracts/compile.ts'
import { agentRegistryAbi, AgentStatus, precompileStandInAbi, rewardPoolAbi } from '../../shared/chain/abis.ts'
import { ChainActionError } from '../../shared/chain/errors.ts'
import { computeEpochRewards } from '../../shared/chain/rewardFormula.ts'
import { transact } from '../../shared/chain/transact.ts'
import { startDevnet, type DevAccount, type Devnet } from './startDevnet.ts'

let devnet: Devnet
let compiled: CompiledContracts
let owner: DevAccount, oracle: DevAccount, alice: DevAccount, bob: DevAccount, carol: DevAccount, stranger: DevAccount
let snapshot: Hex

before(async () => {
  devnet = await startDevnet({ blockTime: 0, blocksPerEpoch: 20 })
  compiled = await compileContracts()
  ;({ deployer: owner, oracle } = devnet.accounts)
  ;[alice, bob, carol, stranger] = devnet.accounts.others as [DevAccount, DevAccount, DevAccount, DevAccount]
})
after(() => devnet.close())

// every test starts from the freshly deployed chain
beforeEach(async () => {
  snapshot = await rpc('evm_snapshot', [])
})
afterEach(async () => {
  await rpc('evm_revert', [snapshot])
})

function rpc<T = Hex>(method: string, params: unknown[]): Promise<T> {
  return devnet.walletClient(owner).request({ method, params } as never) as Promise<T>
}

/** Sends calldata from `from`; returns the receipt. */
async function send(from: DevAccount, to: Address, data: Hex, value?: bigint) {
  return (await transact(devnet.walletClient(from), 'test', { config: devnet.config, to, data, value })).receipt
}

async function reverts(p: Promise<unknown>, reason: string | RegExp): Promise<void> {
  await assert.rejects(p, (e: unknown) => {
    assert.ok(e instanceof ChainActionError, `expected ChainActionError, got ${e}`)
    if (typeof reason === 'string') assert.equal(e.reason, reason)
    else assert.match(e.reason ?? '', reason)
    return true
  })
}

const registry = () => devnet.contracts.agentRegistry
const pool = () => devnet.contracts.rewardPool
const reg = <F extends Parameters<typeof encodeFunctionData<typeof agentRegistryAbi>>[0]['functionName']>(functionName: F, args: readonly unknown[] = []) =>
  encodeFunctionData({ abi: agentRegistryAbi, functionName, args } as never)
const rp = (functionName: string, args: readonly unknown[] = []) => encodeFunctionData({ abi: rewardPoolAbi, functionName, args } as never)
const readReg = (functionName: string, args: readonly unknown[] = []) =>
  readContract(devnet.walletClient(owner), { address: registry(), abi: agentRegistryAbi, functionName, args } as never) as Promise<any>
const readPool = (functionName: string, args: readonly unknown[] = []) =>
  readContract(devnet.walletClient(owner), { address: pool(), abi: rewardPoolAbi, functionName, args } as never) as Promise<any>

const nodeId = (n: number): Hex => keccak256(stringToHex(`node-${n}`))
const register = (who: DevAccount, n: number, metadata = `{"n":${n}}`) => send(who, registry(), reg('registerAgent', [nodeId(n), metadata]))
const word = (a: Address): Hex => pad(a.toLowerCase() as Hex, { size: 32 })
const P = { verify: '0x0000000000000000000000000000000000000020', register: '0x0000000000000000000000000000000000000021', heartbeat: '0x0000000000000000000000000000000000000022', claim: '0x0000000000000000000000000000000000000023' } as const
const agentRegisterData = (name: string, caps: Hex[] = []) =>
  concat([pad(stringToHex(name), { size: 32, dir: 'right' }), keccak256(stringToHex('model')), numberToHex(caps.length, { size: 32 }), ...caps])
const queryWord = async (to: Address, data: Hex) => BigInt((await call(devnet.walletClient(owner), { to, data })).data ?? '0x0')

describe('compileContracts', () => {
  test('a compile error names the file, line and problem; a good compile is cached by source hash', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'shardmesh-sol-'))
    try {
      await writeFile(join(dir, 'Broken.sol'), 'pragma solidity ^0.8.24;\ncontract Broken {\n  function f() external { undefinedThing(); }\n}\n')
      await assert.rejects(compileContracts({ dir, cacheDir: join(dir, 'cache') }), (e: unknown) => {
        assert.ok(e instanceof ContractCompileError)
        assert.match(e.message, /Broken\.sol:3:\d+:/)
        assert.match(e.message, /DeclarationError: Undeclared identifier/)
        return true
      })
      await writeFile(join(dir, 'Broken.sol'), 'pragma solidity ^0.8.24;\ncontract Fine { function f() external pure returns (uint256) { return 7; } }\n')
      const first = await compileContracts({ dir, cacheDir: join(dir, 'cache') })
      assert.match(first.Fine!.deployedBytecode, /^0x[0-9a-f]+$/)
      assert.equal((await readdir(join(dir, 'cache'))).length, 1)
      assert.deepEqual(await compileContracts({ dir, cacheDir: join(dir, 'cache') }), first)
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
  })
})

describe('ABIs: the deployed Plumise signatures', () => {
  // Written out from spec/plumise.md §4 and the Plumise core SDK's RewardPool ABI, independent of shared/chain/abis.ts.
  const deployedRegistry = [
    'registerAgent(bytes32,string)', 'heartbeat()', 'updateMetadata(string)', 'deregisterAgent()', 'getAgent(address)', 'getActiveAgents()',
    'getAllAgents()', 'getActiveAgentCount()', 'getTotalAgentCount()', 'isActive(address)', 'isRegistered(address)', 'slashAgent(address)', 'HEARTBEAT_TIMEOUT()',
  ]
  const registryEvents = ['AgentRegistered(address,bytes32,string)', 'AgentDeregistered(address,bytes32)', 'Heartbeat(address,uint256)', 'AgentSlashed(address,uint256)', 'MetadataUpdated(address,string)']
  const deployedPool = [
    'getPendingReward(address)', 'claimReward()', 'claimRewardFor(address)', 'getContribution(address)', 'getCurrentEpoch()',
    'reportContribution(address,uint256,uint256,uint256)', 'reportContribution(address,uint256,uint256,uint256,uint256,uint256)', 'syncRewards()', 'distributeRewards(uint256)',
    'getEpochAgents(uint256)', 'getEpochContribution(uint256,address)', 'setOracle(address)', 'setRewardFormula(uint256,uint256,uint256,uint256)', 'BLOCKS_PER_EPOCH()',
  ]
  const poolEvents = ['RewardClaimed(address,uint256)', 'EpochAdvanced(uint256)', 'RewardsDistributed(uint256,uint256,uint256)', 'ContributionReported(address,uint256,uint256,uint256,uint256,uint256,uint256)', 'RewardReceived(uint256,uint256)']

  const selectors = (abi: readonly unknown[], type: 'function' | 'event') =>
    new Set((abi as Abi).filter((i) => i.type === type).map((i) => (type === 'function' ? toFunctionSelector(formatAbiItem(i as never)) : toEventSelector(formatAbiItem(i as never)))))

  test('the compiled contracts have every deployed function and event (same selectors and topics)', () => {
    const cases = [
      [compiled.AgentRegistry!.abi, deployedRegistry, registryEvents],
      [compiled.RewardPool!.abi, deployedPool, poolEvents],
    ] as const
    for (const [abi, fns, events] of cases) {
      const haveFns = selectors(abi, 'function')
      const haveEvents = selectors(abi, 'event')
      for (const f of fns) assert.ok(haveFns.has(toFunctionSelector(f)), `missing function ${f}`)
      for (const e of events) assert.ok(haveEvents.has(toEventSelector(e)), `missing event ${e}`)
    }
  })

  test('getAgent and getContribution return the deployed struct encodings', () => {
    const out = (abi: readonly unknown[], name: string) => formatAbiItem({ type: 'function', name: 'x', inputs: (abi as Abi).filter((i) => i.type === 'function').find((i) => i.name === name)!.outputs, outputs: [], stateMutability: 'view' } as never)
    assert.equal(out(compiled.AgentRegistry!.abi, 'getAgent'), 'x((address,bytes32,string,uint256,uint256,uint8,uint256))')
    assert.equal(out(compiled.RewardPool!.abi, 'getContribution'), 'x((uint256,uint256,uint256,uint256,uint256,uint256))')
  })

  test('shared/chain/abis.ts matches the compiled contracts entry for entry', () => {
    for (const [mine, theirs] of [
      [agentRegistryAbi, compiled.AgentRegistry!.abi],
      [rewardPoolAbi, compiled.RewardPool!.abi],
    ] as const) {
      const compiledItems = new Set((theirs as Abi).filter((i) => i.type === 'function' || i.type === 'event').map((i) => formatAbiItem(i as never)))
      for (const item of mine) if (item.type === 'function' || item.type === 'event') assert.ok(compiledItems.has(formatAbiItem(item as never)), `not in the contract: ${formatAbiItem(item as never)}`)
    }
  })
})

describe('AgentRegistry', () => {
  test('registerAgent stores the record, lists the agent and emits AgentRegistered', async () => {
    const receipt = await register(alice, 1, '{"peerId":"x"}')
    const [ev] = parseEventLogs({ abi: agentRegistryAbi, eventName: 'AgentRegistered', logs: receipt.logs })
    assert.deepEqual(ev!.args, { agent: alice.address, nodeId: nodeId(1), metadata: '{"peerId":"x"}' })
    const a = await readReg('getAgent', [alice.address])
    assert.equal(a.wallet, alice.address)
    assert.equal(a.nodeId, nodeId(1))
    assert.equal(a.metadata, '{"peerId":"x"}')
    assert.equal(a.status, AgentStatus.ACTIVE)
    assert.equal(a.stake, 0n)
    assert.equal(a.registeredAt, a.lastHeartbeat)
    assert.equal(await readReg('isRegistered', [alice.address]), true)
    assert.equal(await readReg('isActive', [alice.address]), true)
    assert.equal(await readReg('isRegistered', [bob.address]), false)
    await register(bob, 2)
    assert.deepEqual(await readReg('getAllAgents'), [alice.address, bob.address])
    assert.deepEqual(await readReg('getActiveAgents'), [alice.address, bob.address])
    assert.equal(await readReg('getTotalAgentCount'), 2n)
    assert.equal(await readReg('getActiveAgentCount'), 2n)
    assert.equal(await readReg('HEARTBEAT_TIMEOUT'), 300n)
  })

  test('registration reverts: twice, zero nodeId', async () => {
    await register(alice, 1)
    await reverts(register(alice, 2), 'AgentRegistry: agent already registered')
    await reverts(send(bob, registry(), reg('registerAgent', [pad('0x0'), '{}'])), 'AgentRegistry: nodeId is zero')
  })

  test('a node id is no lock: a stranger who registers it first does not keep its host out (the Oracle checks the peer\'s signature instead)', async () => {
    await register(stranger, 1, '{"peerId":"the host\'s","peerSig":"0x00"}')
    await register(alice, 1)
    assert.equal((await readReg('getAgent', [alice.address])).nodeId, nodeId(1))
    assert.equal((await readReg('getAgent', [stranger.address])).nodeId, nodeId(1))
    assert.equal(await readReg('isRegistered', [alice.address]), true)
  })

  test('an agent without a heartbeat for HEARTBEAT_TIMEOUT turns inactive; a heartbeat revives it', async () => {
    await register(alice, 1)
    await register(bob, 2)
    await rpc('evm_increaseTime', [301])
    await rpc('evm_mine', [])
    assert.equal(await readReg('isActive', [alice.address]), false)
    assert.equal((await readReg('getAgent', [alice.address])).status, AgentStatus.INACTIVE)
    assert.equal(await readReg('getActiveAgentCount'), 0n)
    const receipt = await send(alice, registry(), reg('heartbeat'))
    const [ev] = parseEventLogs({ abi: agentRegistryAbi, eventName: 'Heartbeat', logs: receipt.logs })
    assert.equal(ev!.args.agent, alice.address)
    assert.equal((await readReg('getAgent', [alice.address])).lastHeartbeat, ev!.args.timestamp)
    assert.equal(await readReg('isActive', [alice.address]), true)
    assert.deepEqual(await readReg('getActiveAgents'), [alice.address])
  })

  test('unregistered callers are refused: heartbeat, updateMetadata, deregisterAgent', async () => {
    await reverts(send(alice, registry(), reg('heartbeat')), 'AgentRegistry: agent not registered')
    await reverts(send(alice, registry(), reg('updateMetadata', ['{}'])), 'AgentRegistry: agent not registered')
    await reverts(send(alice, registry(), reg('deregisterAgent')), 'AgentRegistry: agent not registered')
  })

  test('updateMetadata replaces the metadata and emits MetadataUpdated', async () => {
    await register(alice, 1)
    const receipt = await send(alice, registry(), reg('updateMetadata', ['{"v":2}']))
    assert.equal(parseEventLogs({ abi: agentRegistryAbi, eventName: 'MetadataUpdated', logs: receipt.logs })[0]!.args.metadata, '{"v":2}')
    assert.equal((await readReg('getAgent', [alice.address])).metadata, '{"v":2}')
  })

  test('deregisterAgent removes the agent and frees its nodeId', async () => {
    await register(alice, 1)
    await register(bob, 2)
    await register(carol, 3)
    const receipt = await send(alice, registry(), reg('deregisterAgent'))
    assert.deepEqual(parseEventLogs({ abi: agentRegistryAbi, eventName: 'AgentDeregistered', logs: receipt.logs })[0]!.args, { agent: alice.address, nodeId: nodeId(1) })
    assert.equal(await readReg('isRegistered', [alice.address]), false)
    assert.deepEqual(new Set(await readReg('getAllAgents')), new Set([bob.address, carol.address]))
    assert.equal(await readReg('getTotalAgentCount'), 2n)
    await register(stranger, 1) // the nodeId is free again
    await send(carol, registry(), reg('deregisterAgent'))
    assert.deepEqual(new Set(await readReg('getAllAgents')), new Set([bob.address, stranger.address]))
  })

  test('slashAgent: owner only, registered agents only; a slashed agent is never active', async () => {
    await register(alice, 1)
    await reverts(send(bob, registry(), reg('slashAgent', [alice.address])), 'AgentRegistry: caller is not the owner')
    await reverts(send(owner, registry(), reg('slashAgent', [bob.address])), 'AgentRegistry: agent not registered')
    const receipt = await send(owner, registry(), reg('slashAgent', [alice.address]))
    assert.deepEqual(parseEventLogs({ abi: agentRegistryAbi, eventName: 'AgentSlashed', logs: receipt.logs })[0]!.args, { agent: alice.address, amount: 0n })
    await send(alice, registry(), reg('heartbeat'))
    assert.equal((await readReg('getAgent', [alice.address])).status, AgentStatus.SLASHED)
    assert.equal(await readReg('isActive', [alice.address]), false)
  })

  test('owner functions refuse others; heartbeatFor only from the relay (the 0x…22 stand-in)', async () => {
    await register(alice, 1)
    assert.equal(await readReg('heartbeatRelay'), getAddress(P.heartbeat))
    await reverts(send(alice, registry(), reg('heartbeatFor', [alice.address])), 'AgentRegistry: caller is not the heartbeat relay')
    await reverts(send(alice, registry(), reg('setHeartbeatRelay', [alice.address])), 'AgentRegistry: caller is not the owner')
    await reverts(send(alice, registry(), reg('transferOwnership', [alice.address])), 'AgentRegistry: caller is not the owner')
    await send(owner, registry(), reg('transferOwnership', [bob.address]))
    assert.equal(await readReg('owner'), bob.address)
    await reverts(send(owner, registry(), reg('slashAgent', [alice.address])), 'AgentRegistry: caller is not the owner')
  })
})

describe('precompile stand-ins at 0x…20 to 0x…23', () => {
  test('all four hold runtime code at Plumise\'s addresses', async () => {
    for (const a of Object.values(P)) assert.ok(((await getCode(devnet.walletClient(owner), { address: a })) ?? '0x').length > 100, a)
  })

  test('agentRegister (0x…21): the spec layout registers once; a 32-byte query answers', async () => {
    const caps = [pad(stringToHex('text-generation'), { size: 32, dir: 'right' }), pad(stringToHex('pipeline'), { size: 32, dir: 'right' })]
    assert.equal(await queryWord(P.register, word(alice.address)), 0n)
    const receipt = await send(alice, P.register, agentRegisterData('alice', caps))
    const [ev] = parseEventLogs({ abi: precompileStandInAbi, eventName: 'AgentAccountRegistered', logs: receipt.logs })
    assert.equal(ev!.args.agent, alice.address)
    assert.equal(ev!.args.name, pad(stringToHex('alice'), { size: 32, dir: 'right' }))
    assert.deepEqual(ev!.args.capabilities, caps)
    assert.equal(await queryWord(P.register, word(alice.address)), 1n)
    await reverts(send(alice, P.register, agentRegisterData('again')), 'agentRegister: agent already registered')
  })

  test('agentRegister rejects malformed calldata with the layout in the reason', async () => {
    const good = agentRegisterData('bob', [keccak256('0x01')])
    await reverts(send(bob, P.register, concat([good, '0x00'])), /^agentRegister: calldata must be name\(32\) \| modelHash\(32\) \| capCount\(32\)/)
    await reverts(send(bob, P.register, '0x' + '11'.repeat(64) as Hex), /^agentRegister: calldata must be/)
    await reverts(send(bob, P.register, concat([good, keccak256('0x02')])), 'agentRegister: capCount does not match the calldata length')
    await reverts(send(bob, P.register, concat([pad('0x0'), keccak256('0x01'), pad('0x0')])), 'agentRegister: name is empty')
  })

  const proofData = (agent: Address, tokens: bigint, salt = 'a') =>
    concat([keccak256(stringToHex('model')), keccak256(stringToHex(`prompt ${salt}`)), keccak256(stringToHex(`out ${salt}`)), word(agent), numberToHex(tokens, { size: 32 })])
  const proofHashOf = (data: Hex) => keccak256(`0x${data.slice(2, 2 + 256)}`)

  test('verifyInference (0x…20): records a registered agent\'s proof under its proofHash, once', async () => {
    await send(alice, P.register, agentRegisterData('alice'))
    const data = proofData(alice.address, 42n)
    const proofHash = proofHashOf(data)
    assert.equal(await queryWord(P.verify, proofHash), 0n)
    const receipt = await send(alice, P.verify, data)
    const [ev] = parseEventLogs({ abi: precompileStandInAbi, eventName: 'InferenceVerified', logs: receipt.logs })
    assert.deepEqual(ev!.args, { agent: alice.address, proofHash, modelHash: keccak256(stringToHex('model')), tokenCount: 42n })
    assert.equal(await queryWord(P.verify, proofHash), 42n)
    await reverts(send(alice, P.verify, data), 'verifyInference: duplicate proof')
  })

  test('verifyInference rejects forgeries: another sender, an unregistered agent, a wrong layout or length, zero tokens', async () => {
    await send(alice, P.register, agentRegisterData('alice'))
    await reverts(send(bob, P.verify, proofData(alice.address, 5n)), 'verifyInference: sender is not the agent')
    await reverts(send(bob, P.verify, proofData(bob.address, 5n)), 'verifyInference: agent not registered')
    const agentFirst = concat([word(alice.address), keccak256(stringToHex('model')), keccak256('0x01'), keccak256('0x02'), numberToHex(5n, { size: 32 })])
    await reverts(send(alice, P.verify, agentFirst), 'verifyInference: agent word is not a left-padded address (wrong layout?)')
    await reverts(send(alice, P.verify, proofData(alice.address, 5n).slice(0, -2) as Hex), /^verifyInference: calldata must be 160 bytes/)
    await reverts(send(alice, P.verify, proofData(alice.address, 0n)), 'verifyInference: tokenCount is zero')
  })

  test('verifyInference deployed agent-first parses the contracts\' test layout', async () => {
    const c = compiled.InferenceVerifier!
    const client = devnet.walletClient(owner)
    const hash = await deployContract(client, { abi: c.abi as Abi, bytecode: c.bytecode, args: [P.register, true] } as never)
    const verifier = (await waitForTransactionReceipt(client, { hash })).contractAddress!
    await send(alice, P.register, agentRegisterData('alice'))
    const [m, i, o] = [keccak256(stringToHex('model')), keccak256('0x01'), keccak256('0x02')]
    await send(alice, verifier, concat([word(alice.address), m, i, o, numberToHex(7n, { size: 32 })]))
    assert.equal(await queryWord(verifier, keccak256(concat([m, i, o, word(alice.address)]))), 7n)
    await reverts(send(alice, verifier, concat([m, i, o, word(alice.address), numberToHex(7n, { size: 32 })])), /wrong layout/)
  })

  test('agentHeartbeat (0x…22): empty or own address from the agent, the agent\'s address from the oracle; records in the registry', async () => {
    await register(alice, 1)
    await rpc('evm_increaseTime', [400])
    await rpc('evm_mine', [])
    assert.equal(await readReg('isActive', [alice.address]), false)
    let r = await send(alice, P.heartbeat, '0x')
    assert.equal(parseEventLogs({ abi: agentRegistryAbi, eventName: 'Heartbeat', logs: r.logs })[0]!.args.agent, alice.address)
    assert.equal(await readReg('isActive', [alice.address]), true)
    r = await send(alice, P.heartbeat, word(alice.address))
    assert.equal(parseEventLogs({ abi: agentRegistryAbi, eventName: 'Heartbeat', logs: r.logs })[0]!.args.agent, alice.address)
    r = await send(oracle, P.heartbeat, word(alice.address))
    assert.equal(parseEventLogs({ abi: agentRegistryAbi, eventName: 'Heartbeat', logs: r.logs })[0]!.args.agent, alice.address)
    await reverts(send(stranger, P.heartbeat, word(alice.address)), 'agentHeartbeat: sender is neither the agent nor the operator')
    await reverts(send(bob, P.heartbeat, '0x'), 'AgentRegistry: agent not registered')
    await reverts(send(alice, P.heartbeat, '0x0102'), 'agentHeartbeat: calldata must be empty or a 32-byte address')
    await reverts(send(alice, P.heartbeat, keccak256('0x01')), 'agentHeartbeat: calldata word is not a left-padded address')
  })
})

describe('RewardPool', () => {
  const report6 = (agent: Address, tokens: bigint, uptime: bigint, latencyInv: bigint, tasks = 0n) => rp('reportContribution', [agent, tasks, uptime, 0n, tokens, latencyInv])

  test('deploy state: oracle, owner, epoch length, weights, bounds', async () => {
    assert.equal(await readPool('oracle'), oracle.address)
    assert.equal(await readPool('owner'), owner.address)
    assert.equal(await readPool('agentRegistry'), registry())
    assert.equal(await readPool('BLOCKS_PER_EPOCH'), 20n)
    assert.deepEqual(await Promise.all(['tokenWeight', 'taskWeight', 'uptimeWeight', 'latencyWeight'].map((w) => readPool(w))), [40n, 25n, 20n, 15n])
    assert.equal(await readPool('MAX_PROCESSED_TOKENS'), 100_000_000n)
    assert.equal(await readPool('MAX_LATENCY_INV'), 10_000n)
  })

  test('value sent to the pool is the current epoch\'s reward; syncRewards credits value that arrived without a call', async () => {
    const epoch: bigint = await readPool('getCurrentEpoch')
    const r = await send(stranger, pool(), '0x', parseEther('2'))
    assert.deepEqual(parseEventLogs({ abi: rewardPoolAbi, eventName: 'RewardReceived', logs: r.logs })[0]!.args, { amount: parseEther('2'), epoch })
    assert.equal(await readPool('epochRewards', [epoch]), parseEther('2'))
    await rpc('anvil_setBalance', [pool(), numberToHex(parseEther('5'))])
    await send(stranger, pool(), rp('syncRewards'))
    assert.equal(await readPool('epochRewards', [epoch]), parseEther('5'))
    assert.equal(await readPool('lastTrackedBalance'), parseEther('5'))
  })

  test('reportContribution: oracle only, registered and active agents only, within bounds; both overloads', async () => {
    await register(alice, 1)
    await reverts(send(stranger, pool(), report6(alice.address, 10n, 10n, 10n)), 'RewardPool: caller is not the oracle')
    await reverts(send(alice, pool(), report6(alice.address, 10n, 10n, 10n)), 'RewardPool: caller is not the oracle')
    await reverts(send(oracle, pool(), report6(bob.address, 10n, 10n, 10n)), 'RewardPool: agent not registered')
    await reverts(send(oracle, pool(), report6(alice.address, 100_000_001n, 0n, 0n)), 'RewardPool: processedTokens above MAX_PROCESSED_TOKENS')
    await reverts(send(oracle, pool(), report6(alice.address, 0n, 604_801n, 0n)), 'RewardPool: uptimeSeconds above MAX_UPTIME_SECONDS')
    await reverts(send(oracle, pool(), report6(alice.address, 0n, 0n, 10_001n)), 'RewardPool: avgLatencyInv above MAX_LATENCY_INV')
    await reverts(send(oracle, pool(), report6(alice.address, 0n, 0n, 0n, 10_001n)), 'RewardPool: taskCount above MAX_TASK_COUNT')

    const epoch: bigint = await readPool('getCurrentEpoch')
    const r = await send(oracle, pool(), report6(alice.address, 1000n, 60n, 9000n, 3n))
    assert.deepEqual(parseEventLogs({ abi: rewardPoolAbi, eventName: 'ContributionReported', logs: r.logs })[0]!.args, {
      agent: alice.address, taskCount: 3n, uptimeSeconds: 60n, responseScore: 0n, processedTokens: 1000n, avgLatencyInv: 9000n, epoch,
    })
    await send(oracle, pool(), rp('reportContribution', [alice.address, 1n, 30n, 7n]))
    const c = await readPool('getContribution', [alice.address])
    assert.deepEqual([c.taskCount, c.uptimeSeconds, c.responseScore, c.processedTokens, c.avgLatencyInv], [4n, 90n, 7n, 1000n, 9000n])
    const e = await readPool('getEpochContribution', [epoch, alice.address])
    assert.deepEqual([e.taskCount, e.processedTokens], [4n, 1000n])
    assert.deepEqual(await readPool('getEpochAgents', [epoch]), [alice.address])

    await rpc('evm_increaseTime', [301])
    await rpc('evm_mine', [])
    await reverts(send(oracle, pool(), report6(alice.address, 1n, 1n, 1n)), 'RewardPool: agent not active (no recent heartbeat, or slashed)')
  })

  test('distributeRewards splits an ended epoch by score, to the wei; claims pay exactly the pending reward', async () => {
    await register(alice, 1)
    await register(bob, 2)
    await register(carol, 3)
    await devnet.mineToNextEpoch()
    const epoch: bigint = await readPool('getCurrentEpoch')
    const total = parseEther('3') + 7n // not divisible: exercises the remainder rule
    await send(stranger, pool(), '0x', total)
    const reports = [
      { agent: alice.address, processedTokens: 1234n, uptimeSeconds: 600n, avgLatencyInv: 9500n, taskCount: 3n },
      { agent: bob.address, processedTokens: 77n, uptimeSeconds: 599n, avgLatencyInv: 1n, taskCount: 0n },
      { agent: carol.address, processedTokens: 0n, uptimeSeconds: 0n, avgLatencyInv: 0n, taskCount: 0n }, // scores nothing
    ]
    for (const c of reports) await send(oracle, pool(), report6(c.agent, c.processedTokens, c.uptimeSeconds, c.avgLatencyInv, c.taskCount))
    await reverts(send(stranger, pool(), rp('distributeRewards', [epoch])), 'RewardPool: epoch has not ended')
    await devnet.mineToNextEpoch()
    await reverts(send(stranger, pool(), rp('distributeRewards', [epoch + 1n])), 'RewardPool: epoch has not ended')
    const r = await send(stranger, pool(), rp('distributeRewards', [epoch]))
    assert.deepEqual(parseEventLogs({ abi: rewardPoolAbi, eventName: 'RewardsDistributed', logs: r.logs })[0]!.args, { epoch, totalReward: total, agentCount: 3n })
    assert.ok(parseEventLogs({ abi: rewardPoolAbi, eventName: 'EpochAdvanced', logs: r.logs }).length === 1)
    await reverts(send(stranger, pool(), rp('distributeRewards', [epoch])), 'RewardPool: epoch already distributed')

    // independent arithmetic: score = 40·tokens + 25·tasks + 20·uptime + 15·latencyInv
    const sa = 40n * 1234n + 25n * 3n + 20n * 600n + 15n * 9500n
    const sb = 40n * 77n + 20n * 599n + 15n * 1n
    const wantAlice = (total * sa) / (sa + sb)
    const wantBob = total - wantAlice
    assert.equal(await readPool('getPendingReward', [alice.address]), wantAlice)
    assert.equal(await readPool('getPendingReward', [bob.address]), wantBob)
    assert.equal(await readPool('getPendingReward', [carol.address]), 0n)
    const formula = computeEpochRewards({ totalReward: total, reports })
    assert.deepEqual([formula.get(alice.address), formula.get(bob.address), formula.has(carol.address)], [wantAlice, wantBob, false])

    const before = await getBalance(devnet.walletClient(owner), { address: alice.address })
    const claim = await send(alice, pool(), rp('claimReward'))
    const after = await getBalance(devnet.walletClient(owner), { address: alice.address })
    assert.equal(after - before, wantAlice - claim.gasUsed * claim.effectiveGasPrice)
    assert.deepEqual(parseEventLogs({ abi: rewardPoolAbi, eventName: 'RewardClaimed', logs: claim.logs })[0]!.args, { agent: alice.address, amount: wantAlice })
    assert.equal(await readPool('getPendingReward', [alice.address]), 0n)
    await reverts(send(alice, pool(), rp('claimReward')), 'RewardPool: nothing to claim')
    await reverts(send(carol, pool(), rp('claimReward')), 'RewardPool: nothing to claim')
    await reverts(send(stranger, pool(), rp('claimReward')), 'RewardPool: agent not registered')

    // sponsored: the stranger pays the gas, bob gets every wei
    const bobBefore = await getBalance(devnet.walletClient(owner), { address: bob.address })
    await send(stranger, pool(), rp('claimRewardFor', [bob.address]))
    assert.equal(await getBalance(devnet.walletClient(owner), { address: bob.address }), bobBefore + wantBob)
    assert.equal(await readPool('lastTrackedBalance'), 0n)
  })

  test('claim precompile (0x…23) claims for the 32-byte agent or the sender', async () => {
    await register(alice, 1)
    await register(bob, 2)
    await devnet.mineToNextEpoch()
    const epoch: bigint = await readPool('getCurrentEpoch')
    await send(stranger, pool(), '0x', 1000n)
    await send(oracle, pool(), report6(alice.address, 1n, 0n, 0n))
    await send(oracle, pool(), report6(bob.address, 3n, 0n, 0n))
    await devnet.mineToNextEpoch()
    await send(stranger, pool(), rp('distributeRewards', [epoch]))
    const aliceBefore = await getBalance(devnet.walletClient(owner), { address: alice.address })
    await send(stranger, P.claim, word(alice.address))
    assert.equal(await getBalance(devnet.walletClient(owner), { address: alice.address }), aliceBefore + 250n)
    const bobBefore = await getBalance(devnet.walletClient(owner), { address: bob.address })
    const r = await send(bob, P.claim, '0x')
    assert.equal(await getBalance(devnet.walletClient(owner), { address: bob.address }), bobBefore + 750n - r.gasUsed * r.effectiveGasPrice)
    await reverts(send(bob, P.claim, '0x'), 'RewardPool: nothing to claim')
    await reverts(send(bob, P.claim, '0x01'), 'claim: calldata must be empty or a 32-byte address')
  })

  test('an epoch nobody scored in rolls its reward over; an unfunded epoch cannot be distributed', async () => {
    await register(alice, 1)
    await devnet.mineToNextEpoch()
    const epoch: bigint = await readPool('getCurrentEpoch')
    await send(stranger, pool(), '0x', 500n)
    await send(oracle, pool(), report6(alice.address, 0n, 0n, 0n))
    await devnet.mineToNextEpoch()
    await reverts(send(stranger, pool(), rp('distributeRewards', [epoch + 1n])), 'RewardPool: epoch has not ended')
    const r = await send(stranger, pool(), rp('distributeRewards', [epoch]))
    assert.deepEqual(parseEventLogs({ abi: rewardPoolAbi, eventName: 'RewardsDistributed', logs: r.logs })[0]!.args, { epoch, totalReward: 0n, agentCount: 0n })
    assert.equal(await readPool('epochRewards', [epoch + 1n]), 500n)
    await devnet.mineToNextEpoch()
    await devnet.mineToNextEpoch()
    await reverts(send(stranger, pool(), rp('distributeRewards', [epoch + 2n])), 'RewardPool: epoch has no rewards')
  })

  test('owner: setOracle moves the oracle role, setRewardFormula needs weights summing to 100; others are refused', async () => {
    await register(alice, 1)
    await reverts(send(oracle, pool(), rp('setOracle', [stranger.address])), 'RewardPool: caller is not the owner')
    await reverts(send(owner, pool(), rp('setOracle', ['0x0000000000000000000000000000000000000000'])), 'RewardPool: oracle is zero')
    const r = await send(owner, pool(), rp('setOracle', [stranger.address]))
    assert.deepEqual(parseEventLogs({ abi: rewardPoolAbi, eventName: 'OracleUpdated', logs: r.logs })[0]!.args, { oldOracle: oracle.address, newOracle: stranger.address })
    await reverts(send(oracle, pool(), report6(alice.address, 1n, 1n, 1n)), 'RewardPool: caller is not the oracle')
    await send(stranger, pool(), report6(alice.address, 1n, 1n, 1n))

    await reverts(send(alice, pool(), rp('setRewardFormula', [100n, 0n, 0n, 0n])), 'RewardPool: caller is not the owner')
    await reverts(send(owner, pool(), rp('setRewardFormula', [50n, 0n, 0n, 0n])), 'RewardPool: weights must sum to 100')
    await send(owner, pool(), rp('setRewardFormula', [100n, 0n, 0n, 0n]))
    assert.equal(await readPool('tokenWeight'), 100n)
    await reverts(send(alice, pool(), rp('transferOwnership', [alice.address])), 'RewardPool: caller is not the owner')
  })
})
