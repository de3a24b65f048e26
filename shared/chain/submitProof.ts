import type { Account, Address, Hash, Hex, TransactionReceipt } from 'viem'
import type { ChainConfig } from './chainConfig.ts'
import { encodeVerifyInference } from './precompiles.ts'
import { computeProofHash, ProofHashMismatchError, type InferenceProof } from './proofHash.ts'
import { transact, type ChainClient } from './transact.ts'

export type SubmitProofParameters = {
  config: ChainConfig
  /** The agent's wallet (the precompile checks the sender is the proof's agent). */
  account?: Account | Address
  proof: InferenceProof
  /** Gas limit (upstream sends 200 000 to the precompile); estimated when left out. */
  gas?: bigint
}

export type SubmitProofReturnType = { hash: Hash; receipt: TransactionReceipt; proofHash: Hex }

/** Sends the proof to verifyInference (0x…20) in the chain's layout; keep `hash` so others can check it (isProofVerified). */
export async function submitProof(client: ChainClient, p: SubmitProofParameters): Promise<SubmitProofReturnType> {
  const computed = computeProofHash(p.proof)
  if (computed !== p.proof.proofHash.toLowerCase()) throw new ProofHashMismatchError(p.proof.proofHash, computed)
  const data = encodeVerifyInference(p.proof, p.config.verifyInferenceLayout)
  const { hash, receipt } = await transact(client, 'verifyInference', { config: p.config, account: p.account, to: p.config.precompiles.verifyInference, data, gas: p.gas })
  return { hash, receipt, proofHash: computed }
}
