import { homedir } from 'node:os'
import { dirname, join } from 'node:path'
import { parseArgs } from 'node:util'
import { z } from 'zod'
import type { Logger } from '../../shared/logger.ts'
import { createLogger } from '../logger.ts'
import { mkdir } from 'node:fs/promises'
import { createOracle, type Oracle } from '../oracle/createOracle.ts'
import { readModelInfo } from '../oracle/modelInfo.ts'
import { parseOptions } from './usageError.ts'

export const ORACLE_USAGE = `usage: shardmesh oracle [--port 3100] [--host 127.0.0.1] [--db <file>] [--model <folder|url|owner/name>]… [--silence-s 600] [--replicas 2]
       (--db defaults to $SHARDMESH_HOME/oracle.db, ~/.shardmesh/oracle.db; --model to the shipped docs-llama-7m;
        --replicas: pipelines planned when capacity allows, so every layer survives the loss of one peer.)
       Serves the Plumise Oracle API and the Orban agent channel (ws://…/agent/v1/connect) on the same port.`

const optionsSchema = z.object({
  port: z.coerce.number().int().min(0).max(65535).default(3100),
  host: z.string().default('127.0.0.1'),
  db: z.string().default(join(process.env.SHARDMESH_HOME ?? join(homedir(), '.shardmesh'), 'oracle.db')),
  model: z.array(z.string()).default([]),
  silenceS: z.coerce.number().positive().default(600),
  replicas: z.coerce.number().int().min(1).max(16).default(2),
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
      replicas: { type: 'string' },
    },
    strict: true,
  })
  return parseOptions(optionsSchema, { ...values, silenceS: values['silence-s'] })
}

/** Opens the database, reads the models, starts the Oracle: the Plumise HTTP API and the Orban channel on one port. */
export async function startOracle(opts: OracleOptions, logger: Logger = createLogger('shardmesh:oracle')): Promise<Oracle> {
  const models = await Promise.all(opts.model.length ? opts.model.map((m) => readModelInfo(m)) : [readModelInfo(undefined)])
  await mkdir(dirname(opts.db), { recursive: true })
  return createOracle({ db: opts.db, models, port: opts.port, host: opts.host, silenceMs: opts.silenceS * 1000, replicas: opts.replicas, jwtSecret: process.env.ORACLE_JWT_SECRET, logger })
}

/** `shardmesh oracle`: serves the Plumise Oracle API until SIGINT/SIGTERM. */
export async function runOracle(opts: OracleOptions): Promise<void> {
  const logger = createLogger('shardmesh:oracle')
  const oracle = await startOracle(opts, logger)
  logger.info(
    { url: oracle.url, db: opts.db, models: oracle.core.models().map((m) => ({ name: m.name, layers: m.numLayers, source: m.source })), silenceS: opts.silenceS, replicas: opts.replicas },
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
