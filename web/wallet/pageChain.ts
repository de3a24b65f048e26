import { defineChain, getAddress, type Chain } from 'viem'
import type { AppConfig } from '../../shared/app/appConfig.ts'
import { PLUMISE_MAINNET, PLUMISE_MAINNET_ID, PLUMISE_TESTNET, PLUMISE_TESTNET_ID, type ChainConfig } from '../../shared/chain/chainConfig.ts'
import { PRECOMPILES } from '../../shared/chain/precompiles.ts'

export type PageChain = { config: ChainConfig; chain: Chain; rpcUrl: string }

/**
 * The chain the network rewards on, as the page knows it from `/config.json`: the shared/chain
 * config (Plumise's own for 41956 and its testnet, a devnet otherwise) and the viem Chain a wallet
 * is asked to add (its name, currency and the network's RPC URL).
 */
export function pageChainOf(chain: NonNullable<AppConfig['chain']>): PageChain {
  const contracts = { agentRegistry: getAddress(chain.contracts.agentRegistry), rewardPool: getAddress(chain.contracts.rewardPool) }
  const plumise = chain.id === PLUMISE_MAINNET_ID ? PLUMISE_MAINNET : chain.id === PLUMISE_TESTNET_ID ? PLUMISE_TESTNET : undefined
  const config: ChainConfig = plumise
    ? { ...plumise, contracts }
    : {
        kind: 'devnet',
        chainId: chain.id,
        name: `shardmesh devnet (${chain.id})`,
        contracts,
        // the page sends no precompile transactions; the stand-ins' addresses are not in /config.json
        precompiles: { ...PRECOMPILES },
        verifyInferenceLayout: 'agent-last',
        legacyTransactions: false,
        reportContributionArity: 6,
      }
  const viemChain = defineChain({
    id: chain.id,
    name: plumise ? config.name : 'shardmesh devnet',
    nativeCurrency: plumise ? { name: 'PLM', symbol: 'PLM', decimals: 18 } : { name: 'Ether', symbol: 'ETH', decimals: 18 },
    rpcUrls: { default: { http: [chain.rpcUrl] } },
  })
  return { config, chain: viemChain, rpcUrl: chain.rpcUrl }
}
