import { hexToBigInt, isAddressEqual, type Hash } from 'viem'
import { call, getTransaction, getTransactionReceipt } from 'viem/actions'
import type { ChainConfig } from './chainConfig.ts'
import { UnsupportedOnChainError } from './errors.ts'
import { decodeVerifyInference } from './precompiles.ts'
import { computeProofHash, type InferenceProof } from './proofHash.ts'
import type { ChainClient } from './transact.ts'

export type IsProofVerifiedParameters = {
  config: ChainConfig
  proof: InferenceProof
  /**
   * The transaction that submitted it. With it the check works on every chain: the transaction
   * succeeded, went to verifyInference, came from the proof's agent and carries exactly this proof.
   * Without it only the devnet can answer (its stand-in keeps a queryable record).
   */
  txHash?: Hash
}

/** Whether the chain accepted this proof (same hashes, agent and token count). */
export async function isProofVerified(client: ChainClient, p: IsProofVerifiedParameters): Promise<boolean> {
  const { proof, config } = p
  if (computeProofHash(proof) !== proof.proofHash.toLowerCase()) return false
  if (p.txHash === undefined) {
    if (config.kind !== 'devnet') throw new UnsupportedOnChainError('on Plumise a proof is checked through the transaction that submitted it: pass txHash')
    const { data } = await call(client, { to: config.precompiles.verifyInference, data: proof.proofHash })
    return data !== undefined && data !== '0x' && hexToBigInt(data) === BigInt(proof.tokenCount) && proof.tokenCount > 0
  }
  let tx, receipt
  try {
    ;[tx, receipt] = await Promise.all([getTransaction(client, { hash: p.txHash }), getTransactionReceipt(client, { hash: p.txHash })])
  } catch (e) {
    if (/not (be )?found/i.test((e as Error).message)) return false
    throw e
  }
  if (receipt.status !== 'success' || !tx.to || !isAddressEqual(tx.to, config.precompiles.verifyInference)) return false
  if (!isAddressEqual(tx.from, proof.agentAddress)) return false
  let sent
  try {
    sent = decodeVerifyInference(tx.input, config.verifyInferenceLayout)
  } catch {
    return false
  }
  return (
    sent.modelHash === proof.modelHash.toLowerCase() &&
    sent.inputHash === proof.inputHash.toLowerCase() &&
    sent.outputHash === proof.outputHash.toLowerCase() &&
    isAddressEqual(sent.agentAddress, proof.agentAddress) &&
    sent.tokenCount === BigInt(proof.tokenCount)
  )
}
