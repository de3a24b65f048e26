import { createWalletClient, getAddress, type Account, type Chain, type Transport, type WalletClient } from 'viem'
import { chainHttp } from '../../shared/chain/chainHttp.ts'
import { z } from 'zod'
import { PLUMISE_MAINNET_ID, PLUMISE_TESTNET_ID, resolveChainConfig, viemChainOf, type ChainConfig, type DevnetFile } from '../../shared/chain/chainConfig.ts'
import { DEFAULT_DEVNET_FILE, readDevnetFile } from './devnetFile.ts'

const address = z.string().regex(/^0x[0-9a-fA-F]{40}$/, 'a 0x address').transform((a) => getAddress(a))

const envSchema = z.object({
  PLUMISE_RPC_URL: z.string().url().optional(),
  PLUMISE_CHAIN_ID: z.coerce.number().int().positive().default(PLUMISE_MAINNET_ID),
  /** Where a devnet's addresses file is (any chain id other than Plumise's). */
  SHARDMESH_DEVNET_FILE: z.string().default(DEFAULT_DEVNET_FILE),
  // where the upstream sources disagree, or a deployment moved
  PLUMISE_VERIFY_LAYOUT: z.enum(['agent-last', 'agent-first']).optional(),
  PLUMISE_REPORT_ARITY: z.enum(['4', '6']).transform((v) => Number(v) as 4 | 6).optional(),
  PLUMISE_LEGACY_TX: z.enum(['true', 'false']).transform((v) => v === 'true').optional(),
  PLUMISE_AGENT_REGISTRY: address.optional(),
  PLUMISE_REWARD_POOL: address.optional(),
})

export type NodeChain = { config: ChainConfig; rpcUrl: string; chain: Chain; devnet: DevnetFile | undefined }

/**
 * The chain a Node process talks to, from the spec's configuration names: PLUMISE_CHAIN_ID (41956)
 * and PLUMISE_RPC_URL (http://localhost:26902 on Plumise; a devnet's own URL from its addresses file
 * otherwise), plus overrides PLUMISE_VERIFY_LAYOUT, PLUMISE_REPORT_ARITY, PLUMISE_LEGACY_TX,
 * PLUMISE_AGENT_REGISTRY, PLUMISE_REWARD_POOL. Throws with the variable's name on a bad value.
 */
export async function chainConfigFromEnv(env: Record<string, string | undefined> = process.env): Promise<NodeChain> {
  const parsed = envSchema.safeParse(env)
  if (!parsed.success) {
    const i = parsed.error.issues[0]!
    throw new Error(`${i.path.join('.')}: ${i.message}`)
  }
  const e = parsed.data
  const plumise = e.PLUMISE_CHAIN_ID === PLUMISE_MAINNET_ID || e.PLUMISE_CHAIN_ID === PLUMISE_TESTNET_ID
  const devnet = plumise ? undefined : await readDevnetFile(e.SHARDMESH_DEVNET_FILE)
  const base = resolveChainConfig({ chainId: e.PLUMISE_CHAIN_ID, devnet })
  const config: ChainConfig = {
    ...base,
    verifyInferenceLayout: e.PLUMISE_VERIFY_LAYOUT ?? base.verifyInferenceLayout,
    reportContributionArity: e.PLUMISE_REPORT_ARITY ?? base.reportContributionArity,
    legacyTransactions: e.PLUMISE_LEGACY_TX ?? base.legacyTransactions,
    contracts: { agentRegistry: e.PLUMISE_AGENT_REGISTRY ?? base.contracts.agentRegistry, rewardPool: e.PLUMISE_REWARD_POOL ?? base.contracts.rewardPool },
  }
  const rpcUrl = e.PLUMISE_RPC_URL ?? devnet?.rpcUrl ?? 'http://localhost:26902'
  return { config, rpcUrl, chain: viemChainOf(config, rpcUrl), devnet }
}

/** A wallet client for the shared/chain actions. */
export function walletClientFor(chain: NodeChain, account: Account): WalletClient<Transport, Chain, Account> {
  return createWalletClient({ chain: chain.chain, transport: chainHttp(chain.rpcUrl), account })
}
