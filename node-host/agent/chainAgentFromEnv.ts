import type { PrivateKey } from '@libp2p/interface'
import { z } from 'zod'
import type { Logger } from '../../shared/logger.ts'
import { chainConfigFromEnv } from '../chain/chainConfigFromEnv.ts'
import { loadWallet } from '../chain/loadWallet.ts'
import type { HostCounters } from '../host/createNodeHost.ts'
import { createChainAgent, type ChainAgent } from './chainAgent.ts'

/** Wei as digits, or the spec's `1e18` notation. */
const wei = z
  .string()
  .regex(/^\d+(e\d+)?$/i, 'a whole number of wei (e.g. 1000000000000000000 or 1e18)')
  .transform((s) => {
    const [m, e] = s.toLowerCase().split('e') as [string, string | undefined]
    return BigInt(m) * 10n ** BigInt(e ?? 0)
  })

const envSchema = z.object({
  ORACLE_API_URL: z.url({ protocol: /^https?$/ }).optional(),
  /** Seconds between metrics reports (and claims). */
  REPORT_INTERVAL: z.coerce.number().positive().default(60),
  CLAIM_THRESHOLD_WEI: wei.default(10n ** 18n),
  /** Seconds between chain heartbeats (the registry deems an agent inactive after 300 s without one). */
  CHAIN_HEARTBEAT_INTERVAL: z.coerce.number().positive().default(120),
})

/** No metrics before the host exists (in --oracle mode it is made on the first task). */
export const NO_COUNTERS: HostCounters = { tokensProcessed: 0, requestCount: 0, totalLatencyMs: 0 }

/**
 * The host's chain agent when a wallet is configured (PLUMISE_PRIVATE_KEY, or PLUMISE_KEYSTORE with
 * PLUMISE_KEYSTORE_PASSWORD); undefined otherwise. The chain comes from PLUMISE_CHAIN_ID /
 * PLUMISE_RPC_URL (a devnet's from SHARDMESH_DEVNET_FILE), the Oracle from `oracleUrl` (`--oracle`)
 * or ORACLE_API_URL; REPORT_INTERVAL (s), CLAIM_THRESHOLD_WEI, CHAIN_HEARTBEAT_INTERVAL (s).
 * A bad value throws with the variable's name (a configuration error stops the host at start).
 */
export async function chainAgentFromEnv(p: {
  env?: Record<string, string | undefined>
  oracleUrl?: string
  peer: { peerId: string; privateKey: PrivateKey }
  model?: string
  stats: () => HostCounters
  logger: Logger
}): Promise<ChainAgent | undefined> {
  const env = p.env ?? process.env
  if (!env.PLUMISE_PRIVATE_KEY && !env.PLUMISE_KEYSTORE) {
    p.logger.info({}, 'chain: no wallet (PLUMISE_PRIVATE_KEY or PLUMISE_KEYSTORE): not registering, proving or claiming on chain')
    return undefined
  }
  const parsed = envSchema.safeParse(env)
  if (!parsed.success) {
    const i = parsed.error.issues[0]!
    throw new Error(`${i.path.join('.')}: ${i.message}`)
  }
  const e = parsed.data
  const account = await loadWallet({ env })
  const chain = await chainConfigFromEnv(env)
  return createChainAgent({
    chain,
    account,
    peer: p.peer,
    oracleUrl: p.oracleUrl ?? e.ORACLE_API_URL,
    model: p.model,
    reportIntervalMs: e.REPORT_INTERVAL * 1000,
    claimThresholdWei: e.CLAIM_THRESHOLD_WEI,
    heartbeatIntervalMs: e.CHAIN_HEARTBEAT_INTERVAL * 1000,
    stats: p.stats,
    logger: p.logger,
  })
}
