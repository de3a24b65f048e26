import { spawnCli, waitFor, type CliProcess } from './cliProcess.ts'
import { freePort } from '../node-host/net/freePort.ts'
import { appConfigSchema, type AppConfig } from '../shared/app/appConfig.ts'

/** An `npm start` network (`shardmesh local`) as its own process, with the contributor app. */
export type AppNetwork = {
  cli: CliProcess
  /** The app's URL, as the first line printed gives it. */
  appUrl: string
  oracleUrl: string
  apiUrl: string
  config: AppConfig
  logs(): string
  stop(): Promise<void>
}

/**
 * Starts `shardmesh local` on free ports and waits for the app (built, or from the cache) and the
 * Oracle. With `hosts: 1` the one host offers ~55% of the model's weights, so the network is not
 * whole until a page contributes the rest: every completion then passes through that page.
 */
export async function startAppNetwork(options: { hosts: number }): Promise<AppNetwork> {
  const [apiPort, oraclePort, appPort] = [await freePort(), await freePort(), await freePort()]
  const cli = spawnCli(['local', '--hosts', String(options.hosts), '--api-port', String(apiPort), '--oracle-port', String(oraclePort), '--app-port', String(appPort)], { LOG_LEVEL: 'warn' })
  const logs = () => cli.log.join('')
  try {
    const appUrl = await waitFor('the app URL line', async () => /^App: (\S+)/m.exec(logs())?.[1], 120_000, logs)
    const firstLine = logs().split('\n').find((l) => l.trim() && !l.startsWith('shardmesh local: building'))
    if (!firstLine?.startsWith('App: ')) throw new Error(`the app URL is not the first line printed: ${logs().slice(0, 500)}`)
    const oracleUrl = `http://127.0.0.1:${oraclePort}`
    await waitFor('the Oracle', async () => ((await fetch(`${oracleUrl}/health`)).ok ? true : undefined), 120_000, logs)
    // Built (a 503 "building" page until then).
    await waitFor('the built app', async () => ((await fetch(appUrl)).status === 200 ? true : undefined), 300_000, logs)
    const config = await waitFor('a configuration with a relay', async () => {
      const c = appConfigSchema.parse(await (await fetch(new URL('config.json', appUrl))).json())
      return c.relays.length >= options.hosts ? c : undefined
    }, 120_000, logs)
    return {
      cli,
      appUrl,
      oracleUrl,
      apiUrl: `http://127.0.0.1:${apiPort}`,
      config,
      logs,
      async stop() {
        if (cli.child.exitCode === null) cli.child.kill('SIGINT')
        await Promise.race([cli.exited, new Promise((r) => setTimeout(r, 20_000))])
        if (cli.child.exitCode === null) cli.child.kill('SIGKILL')
      },
    }
  } catch (e) {
    cli.child.kill('SIGKILL')
    throw e
  }
}
