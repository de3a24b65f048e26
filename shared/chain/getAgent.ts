import type { Address, Hex } from 'viem'
import { readContract } from 'viem/actions'
import { agentRegistryAbi } from './abis.ts'
import type { ChainConfig } from './chainConfig.ts'
import type { ChainClient } from './transact.ts'

export type AgentRecord = {
  wallet: Address
  nodeId: Hex
  metadata: string
  registeredAt: bigint
  lastHeartbeat: bigint
  /** 0 ACTIVE, 1 INACTIVE, 2 SLASHED (see `AgentStatus`) */
  status: number
  stake: bigint
}

/** The registry's record of `agent`, or null when it is not registered. */
export async function getAgent(client: ChainClient, p: { config: ChainConfig; agent: Address }): Promise<AgentRecord | null> {
  const record = await readContract(client, { address: p.config.contracts.agentRegistry, abi: agentRegistryAbi, functionName: 'getAgent', args: [p.agent] })
  return /^0x0{40}$/.test(record.wallet) ? null : record
}
