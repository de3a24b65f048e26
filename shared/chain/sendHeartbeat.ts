import { encodeFunctionData, type Account, type Address } from 'viem'
import { agentRegistryAbi } from './abis.ts'
import type { ChainConfig } from './chainConfig.ts'
import { encodeHeartbeat } from './precompiles.ts'
import { transact, type ChainClient, type TransactResult } from './transact.ts'

export type SendHeartbeatParameters = {
  config: ChainConfig
  account?: Account | Address
  /**
   * `registry`: AgentRegistry.heartbeat() (what RewardPool's "active" check reads on every chain);
   * `precompile`: the agentHeartbeat precompile 0x…22 (on the devnet its stand-in records into the
   * registry too). @default 'registry'
   */
  via?: 'registry' | 'precompile'
  /** An operator's heartbeat for this agent (precompile only: 32-byte address calldata). */
  agent?: Address
}

/** One heartbeat transaction. */
export async function sendHeartbeat(client: ChainClient, p: SendHeartbeatParameters): Promise<TransactResult> {
  if ((p.via ?? 'registry') === 'registry') {
    if (p.agent !== undefined) throw new Error('sendHeartbeat: an operator heartbeat for another agent goes through the precompile (via: "precompile")')
    const data = encodeFunctionData({ abi: agentRegistryAbi, functionName: 'heartbeat' })
    return transact(client, 'heartbeat', { config: p.config, account: p.account, to: p.config.contracts.agentRegistry, data })
  }
  return transact(client, 'agentHeartbeat', { config: p.config, account: p.account, to: p.config.precompiles.agentHeartbeat, data: encodeHeartbeat(p.agent) })
}
