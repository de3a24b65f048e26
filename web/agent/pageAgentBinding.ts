import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { bytesToHex, getAddress, type Address, type Hex } from 'viem'
import { agentBindingMessage } from '../../shared/chain/agentBinding.ts'
import { loadOrCreateBrowserIdentity } from '../identity/indexedDbIdentity.ts'

/**
 * The tab's peer key signs the binding of its peer to `wallet` on `chainId` (agentBindingMessage,
 * nothing else): what a wallet registers in the AgentRegistry so the Oracle credits this tab's work
 * to it. For a farm, whose wallet key stays in its Node process.
 */
export async function signPageAgentBinding(chainId: number, wallet: Address): Promise<{ peerId: string; signature: Hex }> {
  if (!Number.isSafeInteger(chainId) || chainId <= 0) throw new Error(`not a chain id: ${chainId}`)
  const key = await loadOrCreateBrowserIdentity()
  const peerId = peerIdFromPrivateKey(key).toString()
  const signature = await key.sign(agentBindingMessage({ chainId, wallet: getAddress(wallet), peerId }))
  return { peerId, signature: bytesToHex(signature) }
}
