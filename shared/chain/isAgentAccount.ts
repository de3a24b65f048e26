import { hexToBool, type Address } from 'viem'
import { call } from 'viem/actions'
import type { ChainConfig } from './chainConfig.ts'
import { encodeAddressWord } from './precompiles.ts'
import type { ChainClient } from './transact.ts'

/**
 * Whether `agent` is an agent account (registered through the agentRegister precompile): on Plumise
 * the `agent_isAgentAccount` RPC method, on the devnet a 32-byte query to the 0x…21 stand-in.
 */
export async function isAgentAccount(client: ChainClient, p: { config: ChainConfig; agent: Address }): Promise<boolean> {
  if (p.config.kind === 'plumise') {
    // the spec gives `[addr, "latest"]` for the agent_* methods; upstream's own test sends `[addr]`
    const ask = (params: unknown[]) => client.request({ method: 'agent_isAgentAccount', params } as never) as Promise<unknown>
    const result = await ask([p.agent, 'latest']).catch(() => ask([p.agent]))
    return result === true || result === 'true'
  }
  const { data } = await call(client, { to: p.config.precompiles.agentRegister, data: encodeAddressWord(p.agent) })
  return data !== undefined && hexToBool(data)
}
