import { homedir } from 'node:os'
import { dirname, join } from 'node:path'
import { parseArgs } from 'node:util'
import { z } from 'zod'
import type { Logger } from '../../shared/logger.ts'
import { createLogger } from '../logger.ts'
import { mkdir } from 'node:fs/promises'
import { chainConfigFromEnv } from '../chain/chainConfigFromEnv.ts'
import { loadWallet } from '../chain/loadWallet.ts'
import { createOracle, type Oracle, type OracleInit } from '../oracle/createOracle.ts'
import { readModelInfo } from '../oracle/modelInfo.ts'
import { loadGpuPricing } from '../oracle/rewards/gpuPricing.ts'
import { parseOptions } from './usageError.ts'

export const ORACLE_USAGE = `usage: shardmesh oracle [--port 3100] [--host 127.0.0.1] [--db <file>] [--model <folder|url|owner/name>]… [--silence-s 600] [--reconnect-grace-s 5] [--replicas 2]
       (--db defaults to $SHARDMESH_HOME/oracle.db, ~/.shardmesh/oracle.db; --model to the shipped docs-llama-7m;
        --reconnect-grace-s: how long an agent whose connection dropped keeps its layers before they are re-planned;
        --replicas: pipelines planned when capacity allows, so every layer survives the loss of one peer;
        beyond them every agent that can serve does (more pipelines, copies of the busiest stretches)
        unless --idle-spares keeps the rest idle.)
       [--epoch-fund-wei <wei>] [--chain-poll-s 5] [--pricing <file.json>]
       --pricing (ORACLE_PRICING_FILE): Orban pricing per GPU class, e.g. {"base_rate_usd_per_hour": 0.5,
        "classes": {"H100": 4, "A100": 3, "RTX 4090": 1.6}, "default_multiplier": 1, "cpu_multiplier": 0.1}
        (default: base 0.50 USD/h times the agent's total VRAM / 10 GB).
       Serves the Plumise Oracle API and the Orban agent channel (ws://…/agent/v1/connect) on the same port.
       Rewards on chain when ORACLE_PRIVATE_KEY (the RewardPool's oracle account) is set, on the chain of
       PLUMISE_CHAIN_ID / PLUMISE_RPC_URL (a devnet: its addresses file SHARDMESH_DEVNET_FILE): metrics are booked
       to the pool's epoch; each closed epoch's contributions are reported, then distributed once paid.
       --epoch-fund-wei (EPOCH_FUND_WEI) funds each reported epoch: default 1 ether on a devnet, 0 on Plumise
       (block rewards fund the pool there).
       --pay-sampled-only: an agent's work of an epoch is reported only if a spot check sampled one of its
        committed steps in it and passed (node hosts send passes to POST /api/v1/verify/sample).`

const optionsSchema = z.object({
  port: z.coerce.number().int().min(0).max(65535).default(3100),
  host: z.string().default('127.0.0.1'),
  db: z.string().default(join(process.env.SHARDMESH_HOME ?? join(homedir(), '.shardmesh'), 'oracle.db')),
  model: z.array(z.string()).default([]),
  silenceS: z.coerce.number().positive().default(600),
  reconnectGraceS: z.coerce.number().min(0).max(3600).default(5),
  replicas: z.coerce.number().int().min(1).max(16).default(2),
  epochFundWei: z.string().regex(/^\d+$/, 'a whole number of wei').transform(BigInt).optional(),
  chainPollS: z.coerce.number().positive().optional(),
  pricing: z.string().optional(),
  idleSpares: z.boolean().optional(),
  paySampledOnly: z.boolean().optional(),
})

export type OracleOptions = z.infer<typeof optionsSchema>

export function parseOracleArgs(argv: string[]): OracleOptions {
  const { values } = parseArgs({
    args: argv,
    options: {
      port: { type: 'string' },
      host: { type: 'string' },
      db: { type: 'string' },
      model: { type: 'string', multiple: true },
      'silence-s': { type: 'string' },
      'reconnect-grace-s': { type: 'string' },
      replicas: { type: 'string' },
      'epoch-fund-wei': { type: 'string' },
      'chain-poll-s': { type: 'string' },
      pricing: { type: 'string' },
      'idle-spares': { type: 'boolean' },
      'pay-sampled-only': { type: 'boolean' },
    },
    strict: true,
  })
  const fund = values['epoch-fund-wei'] ?? process.env.EPOCH_FUND_WEI
  const poll = values['chain-poll-s']
  const pricing = values.pricing ?? process.env.ORACLE_PRICING_FILE
  // absent flags stay absent (not undefined-valued keys)
  const { 'idle-spares': idle, 'pay-sampled-only': sampledOnly, ...rest } = values
  return parseOptions(optionsSchema, { ...rest, ...(idle !== undefined ? { idleSpares: idle } : {}), ...(sampledOnly !== undefined ? { paySampledOnly: sampledOnly } : {}), silenceS: values['silence-s'], reconnectGraceS: values['reconnect-grace-s'], ...(pricing !== undefined ? { pricing } : {}), ...(poll !== undefined ? { chainPollS: poll } : {}), ...(fund !== undefined ? { epochFundWei: fund } : {}) })
}

/** The reward reporter's settings from ORACLE_PRIVATE_KEY and the chain's variables; undefined without a key. */
export async function oracleChainFromEnv(opts: OracleOptions, env: Record<string, string | undefined> = process.env): Promise<OracleInit['chain']> {
  if (!env.ORACLE_PRIVATE_KEY) return undefined
  const account = await loadWallet({ privateKey: env.ORACLE_PRIVATE_KEY, env: {} }).catch((e: Error) => {
    throw new Error(`ORACLE_PRIVATE_KEY: ${e.message}`)
  })
  const chain = await chainConfigFromEnv(env)
  const fundWeiPerEpoch = opts.epochFundWei ?? (chain.config.kind === 'devnet' ? 10n ** 18n : 0n)
  return { chain, account, fundWeiPerEpoch, pollMs: (opts.chainPollS ?? 5) * 1000 }
}

/** Opens the database, reads the models, starts the Oracle: the Plumise HTTP API and the Orban channel on one port. */
export async function startOracle(opts: OracleOptions, logger: Logger = createLogger('shardmesh:oracle')): Promise<Oracle> {
  const models = await Promise.all(opts.model.length ? opts.model.map((m) => readModelInfo(m)) : [readModelInfo(undefined)])
  await mkdir(dirname(opts.db), { recursive: true })
  const chain = await oracleChainFromEnv(opts)
  const pricing = opts.pricing === undefined ? undefined : await loadGpuPricing(opts.pricing)
  return createOracle({ pricing, db: opts.db, models, port: opts.port, host: opts.host, silenceMs: opts.silenceS * 1000, reconnectGraceMs: opts.reconnectGraceS * 1000, replicas: opts.replicas, grow: !opts.idleSpares, paySampledWorkOnly: opts.paySampledOnly, jwtSecret: process.env.ORACLE_JWT_SECRET, logger, chain })
}

/** `shardmesh oracle`: serves the Plumise Oracle API until SIGINT/SIGTERM. */
export async function runOracle(opts: OracleOptions): Promise<void> {
  const logger = createLogger('shardmesh:oracle')
  const oracle = await startOracle(opts, logger)
  logger.info(
    { url: oracle.url, db: opts.db, models: oracle.core.models().map((m) => ({ name: m.name, layers: m.numLayers, source: m.source })), silenceS: opts.silenceS, reconnectGraceS: opts.reconnectGraceS, replicas: opts.replicas },
    `oracle listening at ${oracle.url}`,
  )
  let stopping = false
  const stop = async (signal: string) => {
    if (stopping) return
    stopping = true
    logger.info({ signal }, 'shutting down')
    await oracle.close()
    process.exit(0)
  }
  process.once('SIGINT', () => void stop('SIGINT'))
  process.once('SIGTERM', () => void stop('SIGTERM'))
}
