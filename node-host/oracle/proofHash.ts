import { concat, keccak256, pad, type Hex } from 'viem'

/** keccak256(modelHash ‖ inputHash ‖ outputHash ‖ agent left-padded to 32 bytes): 128 bytes in (spec/plumise.md §4). */
export function inferenceProofHash(p: { modelHash: string; inputHash: string; outputHash: string; agent: string }): Hex {
  return keccak256(concat([p.modelHash as Hex, p.inputHash as Hex, p.outputHash as Hex, pad(p.agent.toLowerCase() as Hex, { size: 32 })]))
}
