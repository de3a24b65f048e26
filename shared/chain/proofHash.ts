import { concat, getAddress, keccak256, pad, stringToHex, type Address, type Hex } from 'viem'
import { z } from 'zod'

/** The inference proof of spec/plumise.md §4, as JSON on the wire. */
export type InferenceProof = {
  /** keccak256(utf8(model name)) */
  modelHash: Hex
  /** keccak256(utf8(prompt)) */
  inputHash: Hex
  /** keccak256(utf8(generated text)): the real text, also when streamed */
  outputHash: Hex
  /** the agent's wallet, checksummed */
  agentAddress: Address
  /** tokens generated (not part of proofHash) */
  tokenCount: number
  /** keccak256(modelHash ‖ inputHash ‖ outputHash ‖ agent left-padded to 32 bytes) */
  proofHash: Hex
}

const hash32 = z.string().regex(/^0x[0-9a-fA-F]{64}$/, 'a 32-byte 0x hex string') as unknown as z.ZodType<Hex>
const address = z.string().regex(/^0x[0-9a-fA-F]{40}$/, 'a 20-byte 0x address').transform((a) => getAddress(a))

/** Validates a proof from the network (both upstream shapes: with or without agentAddress/proofHash). */
export const inferenceProofInputSchema = z.object({
  modelHash: hash32,
  inputHash: hash32,
  outputHash: hash32,
  tokenCount: z.number().int().nonnegative(),
  agentAddress: address.optional(),
  proofHash: hash32.optional(),
})

export const modelHashOf = (model: string): Hex => keccak256(stringToHex(model))
export const inputHashOf = (prompt: string): Hex => keccak256(stringToHex(prompt))
export const outputHashOf = (text: string): Hex => keccak256(stringToHex(text))

/** keccak256 over 128 bytes: modelHash ‖ inputHash ‖ outputHash ‖ agent left-padded to 32. */
export function computeProofHash(p: { modelHash: Hex; inputHash: Hex; outputHash: Hex; agentAddress: Address }): Hex {
  return keccak256(concat([p.modelHash, p.inputHash, p.outputHash, pad(p.agentAddress.toLowerCase() as Hex, { size: 32 })]))
}

/** Builds the proof of one generation from its real texts. */
export function createInferenceProof(p: { model: string; prompt: string; output: string; agentAddress: Address; tokenCount: number }): InferenceProof {
  const fields = {
    modelHash: modelHashOf(p.model),
    inputHash: inputHashOf(p.prompt),
    outputHash: outputHashOf(p.output),
    agentAddress: getAddress(p.agentAddress),
  }
  return { ...fields, tokenCount: p.tokenCount, proofHash: computeProofHash(fields) }
}

export class ProofHashMismatchError extends Error {
  constructor(claimed: Hex, computed: Hex) {
    super(`proofHash ${claimed} does not match the proof's fields (they hash to ${computed})`)
    this.name = 'ProofHashMismatchError'
  }
}

/** Completes a proof received in either upstream shape; a claimed proofHash must match the fields. */
export function normalizeInferenceProof(input: unknown, agentAddress?: Address): InferenceProof {
  const p = inferenceProofInputSchema.parse(input)
  const agent = p.agentAddress ?? (agentAddress && getAddress(agentAddress))
  if (!agent) throw new Error('proof has no agentAddress and none was given')
  if (agentAddress && getAddress(agentAddress) !== agent) throw new Error(`proof is for ${agent}, not ${getAddress(agentAddress)}`)
  const fields = { modelHash: p.modelHash, inputHash: p.inputHash, outputHash: p.outputHash, agentAddress: agent }
  const proofHash = computeProofHash(fields)
  if (p.proofHash !== undefined && p.proofHash.toLowerCase() !== proofHash) throw new ProofHashMismatchError(p.proofHash, proofHash)
  return { ...fields, tokenCount: p.tokenCount, proofHash }
}

/**
 * {@link computeProofHash} over fields as the Oracle's store and routes hold them (plain strings,
 * `agent` in any case): the same 128-byte keccak256.
 */
export function inferenceProofHash(p: { modelHash: string; inputHash: string; outputHash: string; agent: string }): Hex {
  return computeProofHash({ modelHash: p.modelHash as Hex, inputHash: p.inputHash as Hex, outputHash: p.outputHash as Hex, agentAddress: p.agent as Address })
}
