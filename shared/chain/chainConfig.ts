import { defineChain, getAddress, type Address, type Chain } from 'viem'
import { z } from 'zod'
import { PRECOMPILES, type PrecompileAddresses, type VerifyInferenceLayout } from './precompiles.ts'

/** Everything the chain actions need to know about the chain they talk to. */
export type ChainConfig = {
  /** `devnet`: the project's contracts on anvil with precompile stand-ins; `plumise`: Plumise v2. */
  kind: 'devnet' | 'plumise'
  chainId: number
  name: string
  contracts: { agentRegistry: Address; rewardPool: Address }
  precompiles: PrecompileAddresses
  /** Order of verifyInference's 160 bytes (the upstream sources disagree). */
  verifyInferenceLayout: VerifyInferenceLayout
  /** Send type-0 transactions (Plumise takes legacy transactions). */
  legacyTransactions: boolean
  /**
   * Which reportContribution the pool has: 4 arguments (the genesis RewardPool at 0x…1000 only has
   * this one, per the upstream Oracle) or 6 (adds processedTokens and avgLatencyInv).
   */
  reportContributionArity: 4 | 6
}

export const PLUMISE_MAINNET_ID = 41956
export const PLUMISE_TESTNET_ID = 419561

const plumiseBase = {
  kind: 'plumise',
  precompiles: { ...PRECOMPILES },
  verifyInferenceLayout: 'agent-last',
  legacyTransactions: true,
  reportContributionArity: 4,
} as const

export const PLUMISE_MAINNET: ChainConfig = {
  ...plumiseBase,
  chainId: PLUMISE_MAINNET_ID,
  name: 'Plumise',
  contracts: { rewardPool: '0x0000000000000000000000000000000000001000', agentRegistry: getAddress('0xc9cf64344d22f02f6cdb8e7b5349f30e09f9043c') },
}

export const PLUMISE_TESTNET: ChainConfig = {
  ...plumiseBase,
  chainId: PLUMISE_TESTNET_ID,
  name: 'Plumise Testnet',
  contracts: { rewardPool: '0x0000000000000000000000000000000000001000', agentRegistry: getAddress('0xa803ee49a61e4c07cfaac79594fee98a76d41733') },
}

const address = z.string().regex(/^0x[0-9a-fA-F]{40}$/, 'a 0x address').transform((a) => getAddress(a))

/** The addresses file `startDevnet` writes (and the hosts, the oracle and the web app read). */
export const devnetFileSchema = z.object({
  rpcUrl: z.string().url(),
  chainId: z.number().int().positive(),
  contracts: z.object({ agentRegistry: address, rewardPool: address }),
  precompiles: z.object({ verifyInference: address, agentRegister: address, agentHeartbeat: address, claimReward: address }),
  verifyInferenceLayout: z.enum(['agent-last', 'agent-first']),
  blocksPerEpoch: z.number().int().positive(),
  /** Well-known anvil dev accounts (public keys only): the contracts' owner and the oracle. */
  accounts: z.object({ deployer: address, oracle: address }),
})
export type DevnetFile = z.infer<typeof devnetFileSchema>

export function devnetChainConfig(file: DevnetFile): ChainConfig {
  return {
    kind: 'devnet',
    chainId: file.chainId,
    name: `shardmesh devnet (${file.chainId})`,
    contracts: file.contracts,
    precompiles: file.precompiles,
    verifyInferenceLayout: file.verifyInferenceLayout,
    legacyTransactions: false,
    reportContributionArity: 6,
  }
}

export class UnknownChainError extends Error {
  constructor(chainId: number) {
    super(`chain ${chainId} is neither Plumise (${PLUMISE_MAINNET_ID}, testnet ${PLUMISE_TESTNET_ID}) nor a devnet: start one with \`npx shardmesh devnet\` and pass its addresses file`)
    this.name = 'UnknownChainError'
  }
}

/**
 * The config for a chain id: Plumise's own, or the devnet's from its addresses file. `overrides`
 * replace single fields where the upstream sources disagree (layout, arity, addresses).
 */
export function resolveChainConfig(params: { chainId: number; devnet?: DevnetFile; overrides?: Partial<ChainConfig> }): ChainConfig {
  const { chainId, devnet, overrides } = params
  let base: ChainConfig
  if (chainId === PLUMISE_MAINNET_ID) base = PLUMISE_MAINNET
  else if (chainId === PLUMISE_TESTNET_ID) base = PLUMISE_TESTNET
  else if (devnet && devnet.chainId === chainId) base = devnetChainConfig(devnet)
  else throw new UnknownChainError(chainId)
  return { ...base, ...overrides }
}

/** A viem `Chain` for clients of this config (native currency PLM on Plumise, ETH on the devnet). */
export function viemChainOf(config: ChainConfig, rpcUrl: string): Chain {
  return defineChain({
    id: config.chainId,
    name: config.name,
    nativeCurrency: config.kind === 'plumise' ? { name: 'PLM', symbol: 'PLM', decimals: 18 } : { name: 'Ether', symbol: 'ETH', decimals: 18 },
    rpcUrls: { default: { http: [rpcUrl] } },
    // local blocks are instant: poll receipts quickly
    blockTime: config.kind === 'devnet' ? 200 : 3_000,
  })
}
