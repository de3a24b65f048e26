import { concat, getAddress, isAddress, isHex, numberToHex, pad, size, slice, stringToHex, type Address, type Hex } from 'viem'

/** Plumise's agent precompiles (spec/plumise.md §4); the devnet installs stand-ins at the same addresses. */
export const PRECOMPILES = {
  verifyInference: '0x0000000000000000000000000000000000000020',
  agentRegister: '0x0000000000000000000000000000000000000021',
  agentHeartbeat: '0x0000000000000000000000000000000000000022',
  claimReward: '0x0000000000000000000000000000000000000023',
} as const satisfies Record<string, Address>

export type PrecompileAddresses = { [K in keyof typeof PRECOMPILES]: Address }

/**
 * Where verifyInference's 160 bytes put the agent: last per the Python agent
 * (`modelHash ‖ inputHash ‖ outputHash ‖ agent ‖ tokenCount`), first per the contracts' own test
 * (`agent ‖ modelHash ‖ inputHash ‖ outputHash ‖ tokenCount`). The sources disagree, so it is
 * configuration (ChainConfig.verifyInferenceLayout), kept in this one place.
 */
export type VerifyInferenceLayout = 'agent-last' | 'agent-first'

export class PrecompileCalldataError extends Error {
  constructor(message: string) {
    super(message)
    this.name = 'PrecompileCalldataError'
  }
}

function word32(value: Hex, what: string): Hex {
  if (!isHex(value) || size(value) !== 32) throw new PrecompileCalldataError(`${what} must be 32 bytes of hex, got ${value}`)
  return value
}

function uint256(value: bigint | number, what: string): Hex {
  const v = BigInt(value)
  if (v < 0n || v >= 2n ** 256n) throw new PrecompileCalldataError(`${what} is not a uint256: ${value}`)
  return numberToHex(v, { size: 32 })
}

/** An address left-padded to a 32-byte word (lowercase hex). */
export function encodeAddressWord(agent: Address): Hex {
  if (!isAddress(agent, { strict: false })) throw new PrecompileCalldataError(`not an address: ${agent}`)
  return pad(agent.toLowerCase() as Hex, { size: 32 })
}

export type AgentRegisterInput = {
  /** Agent name, at most 32 bytes of UTF-8 (zero-padded on the right). */
  name: string
  /** keccak256 of the model name (see `modelHashOf`). */
  modelHash: Hex
  /** 32-byte capability identifiers. */
  capabilities?: readonly Hex[]
}

/** 0x…21 calldata: `name (32) ‖ modelHash (32) ‖ capCount (uint256) ‖ capability (32) × capCount`. */
export function encodeAgentRegister({ name, modelHash, capabilities = [] }: AgentRegisterInput): Hex {
  const nameHex = stringToHex(name)
  if (size(nameHex) === 0 || size(nameHex) > 32) throw new PrecompileCalldataError(`agent name must be 1 to 32 bytes of UTF-8, got ${size(nameHex)}`)
  return concat([
    pad(nameHex, { size: 32, dir: 'right' }),
    word32(modelHash, 'modelHash'),
    uint256(capabilities.length, 'capCount'),
    ...capabilities.map((c, i) => word32(c, `capability ${i}`)),
  ])
}

/** A capability id from a label (UTF-8, zero-padded on the right, at most 32 bytes). */
export function capabilityId(label: string): Hex {
  const hex = stringToHex(label)
  if (size(hex) > 32) throw new PrecompileCalldataError(`capability "${label}" is longer than 32 bytes`)
  return pad(hex, { size: 32, dir: 'right' })
}

/** 0x…22 calldata: empty (a heartbeat for the sender) or the agent's address left-padded to 32 bytes (an operator's). */
export function encodeHeartbeat(agent?: Address): Hex {
  return agent === undefined ? '0x' : encodeAddressWord(agent)
}

/** 0x…23 calldata: the agent's address left-padded to 32 bytes (operator-sponsored), or empty for the sender. */
export function encodeClaim(agent?: Address): Hex {
  return agent === undefined ? '0x' : encodeAddressWord(agent)
}

export type VerifyInferenceInput = {
  modelHash: Hex
  inputHash: Hex
  outputHash: Hex
  agentAddress: Address
  tokenCount: bigint | number
}

/** 0x…20 calldata: 160 bytes in `layout` order. */
export function encodeVerifyInference(proof: VerifyInferenceInput, layout: VerifyInferenceLayout): Hex {
  const hashes = [word32(proof.modelHash, 'modelHash'), word32(proof.inputHash, 'inputHash'), word32(proof.outputHash, 'outputHash')]
  const agent = encodeAddressWord(proof.agentAddress)
  const tokens = uint256(proof.tokenCount, 'tokenCount')
  return concat(layout === 'agent-first' ? [agent, ...hashes, tokens] : [...hashes, agent, tokens])
}

/** Parses 0x…20 calldata back into its fields (how the oracle reads a proof out of a transaction). */
export function decodeVerifyInference(data: Hex, layout: VerifyInferenceLayout): Required<VerifyInferenceInput> & { tokenCount: bigint } {
  if (size(data) !== 160) throw new PrecompileCalldataError(`verifyInference calldata must be 160 bytes, got ${size(data)}`)
  const words = [0, 1, 2, 3, 4].map((i) => slice(data, i * 32, i * 32 + 32))
  const [agentWord, modelHash, inputHash, outputHash] = layout === 'agent-first' ? [words[0]!, words[1]!, words[2]!, words[3]!] : [words[3]!, words[0]!, words[1]!, words[2]!]
  if (BigInt(agentWord) >> 160n !== 0n) throw new PrecompileCalldataError('verifyInference agent word is not a left-padded address (wrong layout?)')
  return { modelHash, inputHash, outputHash, agentAddress: getAddress(slice(agentWord, 12)), tokenCount: BigInt(words[4]!) }
}
