import { parseArgs } from 'node:util'
import { UsageError } from '../cli/usageError.ts'
import { buildApp } from './buildApp.ts'
import { createAppServer, type AppServer } from './createAppServer.ts'
import { networkAppConfig } from './networkAppConfig.ts'

export const APP_USAGE = `usage: shardmesh app [--port 5173] [--host 127.0.0.1] [--oracle http://127.0.0.1:3100] [--relay <ws multiaddr>]… [--devnet-file <file>] [--api <url>]
       The contributor app alone (built once, cached until its sources change), against a network elsewhere;
       GET /config.json tells the page the Oracle, relays and chain (?oracle= in the page's URL overrides).`

export type AppOptions = { port: number; host: string; oracle: string; relays?: string[]; devnetFile?: string; api?: string }

export function parseAppArgs(argv: string[]): AppOptions {
  const { values } = parseArgs({
    args: argv,
    options: { port: { type: 'string' }, host: { type: 'string' }, oracle: { type: 'string' }, relay: { type: 'string', multiple: true }, 'devnet-file': { type: 'string' }, api: { type: 'string' } },
    strict: true,
  })
  const port = Number(values.port ?? 5173)
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new UsageError(`--port must be a port number, got "${values.port}"`)
  const oracle = values.oracle ?? process.env.ORACLE_URL ?? 'http://127.0.0.1:3100'
  if (!URL.canParse(oracle)) throw new UsageError(`--oracle must be a URL, got "${oracle}"`)
  return { port, host: values.host ?? '127.0.0.1', oracle, relays: values.relay, devnetFile: values['devnet-file'] ?? process.env.SHARDMESH_DEVNET_FILE, api: values.api }
}

/** Builds the app if its sources changed, serves it, and prints its URL. */
export async function runApp(opts: AppOptions): Promise<AppServer> {
  const server = await createAppServer({
    dir: buildApp({ onBuild: () => process.stderr.write('shardmesh app: building the app (cached until its sources change)…\n') }),
    oracle: opts.oracle,
    config: networkAppConfig({ oracle: opts.oracle, relays: opts.relays, devnetFile: opts.devnetFile, api: opts.api }),
    port: opts.port,
    host: opts.host,
  })
  process.stdout.write(`App: ${server.url} (Oracle ${opts.oracle})\n`)
  const stop = () => void server.close().then(() => process.exit(0))
  process.once('SIGINT', stop)
  process.once('SIGTERM', stop)
  return server
}
