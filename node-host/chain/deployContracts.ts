import { encodeFunctionData, getAddress, type Abi, type Account, type Address, type Chain, type Client, type Hex, type Transport } from 'viem'
import { deployContract, getCode, waitForTransactionReceipt } from 'viem/actions'
import { compileContracts } from '../../contracts/compile.ts'
import { agentRegistryAbi } from '../../shared/chain/abis.ts'
import type { ChainConfig } from '../../shared/chain/chainConfig.ts'
import { PRECOMPILES, type PrecompileAddresses, type VerifyInferenceLayout } from '../../shared/chain/precompiles.ts'
import { transact } from '../../shared/chain/transact.ts'

export type DeployContractsParameters = {
  /** A wallet client on the devnet whose account becomes the contracts' owner. */
  client: Client<Transport, Chain, Account>
  /** The RewardPool's oracle. */
  oracle: Address
  /** Blocks per reward epoch. */
  blocksPerEpoch: number
  /** The layout the verifyInference stand-in parses. @default 'agent-last' */
  verifyInferenceLayout?: VerifyInferenceLayout
}

export type DeployedContracts = {
  contracts: { agentRegistry: Address; rewardPool: Address }
  precompiles: PrecompileAddresses
  /** Gas of each deployment and setup transaction, by name. */
  gasUsed: Record<string, bigint>
}

/**
 * Deploys AgentRegistry and RewardPool, then the precompile stand-ins, whose runtime code (with
 * their immutables filled in) moves to Plumise's precompile addresses through anvil_setCode; the
 * registry takes the heartbeat stand-in as its relay. Needs anvil (or a chain with anvil_setCode).
 */
export async function deployContracts(p: DeployContractsParameters): Promise<DeployedContracts> {
  const compiled = await compileContracts()
  const { client } = p
  const gasUsed: Record<string, bigint> = {}
  const deploy = async (name: string, args: readonly unknown[] = []): Promise<Address> => {
    const c = compiled[name]
    if (!c) throw new Error(`contracts/ has no contract ${name}`)
    const hash = await deployContract(client, { abi: c.abi as Abi, bytecode: c.bytecode, args } as Parameters<typeof deployContract>[1])
    const receipt = await waitForTransactionReceipt(client, { hash })
    if (receipt.status !== 'success' || !receipt.contractAddress) throw new Error(`deploying ${name} failed (tx ${hash})`)
    gasUsed[name] = receipt.gasUsed
    return receipt.contractAddress
  }
  const install = async (name: string, at: Address, args: readonly unknown[]): Promise<void> => {
    const code = await getCode(client, { address: await deploy(name, args) })
    if (!code) throw new Error(`${name} has no runtime code`)
    await client.request({ method: 'anvil_setCode', params: [at, code as Hex] } as never)
  }

  const agentRegistry = await deploy('AgentRegistry')
  const rewardPool = await deploy('RewardPool', [agentRegistry, p.oracle, BigInt(p.blocksPerEpoch)])
  await install('AgentRegisterPrecompile', PRECOMPILES.agentRegister, [])
  await install('InferenceVerifier', PRECOMPILES.verifyInference, [PRECOMPILES.agentRegister, p.verifyInferenceLayout === 'agent-first'])
  await install('AgentHeartbeatPrecompile', PRECOMPILES.agentHeartbeat, [agentRegistry, rewardPool])
  await install('ClaimRewardPrecompile', PRECOMPILES.claimReward, [rewardPool])

  const config = { legacyTransactions: false } as ChainConfig
  const relay = await transact(client, 'setHeartbeatRelay', {
    config,
    to: agentRegistry,
    data: encodeFunctionData({ abi: agentRegistryAbi, functionName: 'setHeartbeatRelay', args: [PRECOMPILES.agentHeartbeat] }),
  })
  gasUsed.setHeartbeatRelay = relay.receipt.gasUsed
  return { contracts: { agentRegistry: getAddress(agentRegistry), rewardPool: getAddress(rewardPool) }, precompiles: { ...PRECOMPILES }, gasUsed }
}
