import { appConfigSchema, type AppConfig } from '../../shared/app/appConfig.ts'

export class AppConfigError extends Error {
  constructor(message: string) {
    super(message)
    this.name = 'AppConfigError'
  }
}

/**
 * The network this page works with, from `/config.json` beside it. `?oracle=<url>` points the same
 * build at another Oracle (its HTTP routes fetched directly, so that Oracle must allow this origin);
 * `?relay=<multiaddr>` (repeatable) replaces the relays.
 */
export async function loadAppConfig(location: Location = window.location): Promise<AppConfig> {
  let res: Response
  try {
    res = await fetch(new URL('config.json', new URL('/', location.href)), { cache: 'no-store' })
  } catch (e) {
    throw new AppConfigError(`the app server did not answer for its configuration: ${(e as Error).message}`)
  }
  if (!res.ok) throw new AppConfigError(`the app server could not give its configuration (HTTP ${res.status}): ${(await res.text()).slice(0, 300)}`)
  const parsed = appConfigSchema.safeParse(await res.json().catch(() => undefined))
  if (!parsed.success) throw new AppConfigError(`the app's configuration is invalid: ${parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`)
  const config = parsed.data
  const params = new URLSearchParams(location.search)
  const oracle = params.get('oracle')
  const relays = params.getAll('relay')
  if (oracle) {
    if (!URL.canParse(oracle)) throw new AppConfigError(`?oracle= is not a URL: "${oracle}"`)
    const base = oracle.replace(/\/$/, '')
    config.oracle = base
    config.oracleHttp = base
    config.models = config.models.map((m) => ({ name: m.name, url: `${base}/models/${encodeURIComponent(m.name)}/` }))
  }
  if (relays.length) config.relays = relays
  return config
}

/** An Oracle HTTP route as this page fetches it (through the app server's window, or directly). */
export function oracleRoute(config: AppConfig, path: string): string {
  return new URL(`${config.oracleHttp.replace(/\/$/, '')}${path}`, window.location.href).href
}
