import { encodeFunctionData, type Account, type Address, type Hash, type Hex } from 'viem'
import { parseAccount } from 'viem/accounts'
import { agentRegistryAbi } from './abis.ts'
import { AgentBindingError, createAgentMetadata, nodeIdFromPeerId, verifyAgentBinding, type PeerSigner } from './agentBinding.ts'
import type { ChainConfig } from './chainConfig.ts'
import { ChainActionError } from './errors.ts'
import { getAgent } from './getAgent.ts'
import { isAgentAccount } from './isAgentAccount.ts'
import { encodeAgentRegister, type AgentRegisterInput } from './precompiles.ts'
import { transact, type ChainClient } from './transact.ts'

export { verifyAgentBinding, nodeIdFromPeerId, ed25519Signer } from './agentBinding.ts'

export type RegisterAgentParameters = {
  config: ChainConfig
  /** The agent's wallet; defaults to the client's account. */
  account?: Account | Address
  /** The libp2p identity to bind: its peer id and a signer with its Ed25519 key. */
  peer: PeerSigner
  /** Extra public metadata stored with the binding (model, endpoints, …). */
  metadata?: Record<string, unknown>
  /** Also make the wallet an agent account through the agentRegister precompile (0x…21). `false` skips it. */
  precompile?: AgentRegisterInput | false
}

export type RegisterAgentReturnType = {
  /** keccak256 of the peer id bytes. */
  nodeId: Hex
  /** The metadata JSON now on chain. */
  metadata: string
  /** The registry transaction (registerAgent, or updateMetadata to repair a binding); undefined when the record was already right. */
  hash: Hash | undefined
  gasUsed: bigint | undefined
  /** The agentRegister precompile transaction; undefined when skipped or already an agent account. */
  precompileHash: Hash | undefined
  precompileGasUsed: bigint | undefined
}

async function bindingVerifies(chainId: number, agent: Parameters<typeof verifyAgentBinding>[0]['agent']): Promise<boolean> {
  try {
    await verifyAgentBinding({ chainId, agent })
    return true
  } catch (e) {
    if (e instanceof AgentBindingError) return false
    throw e
  }
}

/**
 * Registers the wallet in the AgentRegistry under the peer's nodeId, with metadata that carries
 * the peer's signature over (chain id, wallet); then, unless told not to, at the agentRegister
 * precompile. Idempotent: a wallet already registered with this nodeId and a binding that
 * verifies (or already an agent account) sends nothing for that step; one whose binding does not
 * verify (an older build, a lost key) gets fresh metadata; one registered under another nodeId is
 * an error. The binding is checked before it is sent: a signer that is not the peer's key fails here
 * (AgentBindingError), not at the Oracle, which credits only bindings that verify.
 */
export async function registerAgent(client: ChainClient, p: RegisterAgentParameters): Promise<RegisterAgentReturnType> {
  const accountOrAddress = p.account ?? client.account
  if (!accountOrAddress) throw new ChainActionError('registerAgent', { message: 'needs an account: the client has none and none was passed' })
  const wallet = parseAccount(accountOrAddress).address
  const nodeId = nodeIdFromPeerId(p.peer.peerId)
  const result: RegisterAgentReturnType = { nodeId, metadata: '', hash: undefined, gasUsed: undefined, precompileHash: undefined, precompileGasUsed: undefined }

  const existing = await getAgent(client, { config: p.config, agent: wallet })
  if (existing && existing.nodeId.toLowerCase() !== nodeId) {
    throw new ChainActionError('registerAgent', { message: `refused: ${wallet} is already registered under nodeId ${existing.nodeId}, not this peer's ${nodeId} (deregister first)` })
  }
  if (existing && (await bindingVerifies(p.config.chainId, existing))) {
    result.metadata = existing.metadata
  } else {
    result.metadata = await createAgentMetadata({ chainId: p.config.chainId, wallet, peer: p.peer, extra: p.metadata })
    await verifyAgentBinding({ chainId: p.config.chainId, agent: { wallet, nodeId, metadata: result.metadata } })
    const data = existing
      ? encodeFunctionData({ abi: agentRegistryAbi, functionName: 'updateMetadata', args: [result.metadata] })
      : encodeFunctionData({ abi: agentRegistryAbi, functionName: 'registerAgent', args: [nodeId, result.metadata] })
    const action = existing ? 'updateMetadata' : 'registerAgent'
    const { hash, receipt } = await transact(client, action, { config: p.config, account: accountOrAddress, to: p.config.contracts.agentRegistry, data })
    result.hash = hash
    result.gasUsed = receipt.gasUsed
  }

  if (p.precompile) {
    const already = await isAgentAccount(client, { config: p.config, agent: wallet }).catch(() => false) // RPC missing: try anyway
    if (!already) {
      const data = encodeAgentRegister(p.precompile)
      const { hash, receipt } = await transact(client, 'agentRegister', { config: p.config, account: accountOrAddress, to: p.config.precompiles.agentRegister, data })
      result.precompileHash = hash
      result.precompileGasUsed = receipt.gasUsed
    }
  }
  return result
}
