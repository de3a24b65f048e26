import { z } from 'zod'
import type { AppConfig } from '../../shared/app/appConfig.ts'
import { topologySchema } from '../../shared/oracle/plumiseSchemas.ts'
import { readDevnetFile } from '../chain/devnetFile.ts'

export type NetworkAppConfigInit = {
  oracle: string
  /** Relay `/ws` multiaddrs to offer; absent: the hosts' `/ws` addresses from the Oracle's topology. */
  relays?: string[]
  /** The devnet's addresses file (`npm start` writes one); read on each call, absent or unreadable: no chain. */
  devnetFile?: string
  /** The origin's HTTP API, if the network has one. */
  api?: string
}

const healthSchema = z.object({ models: z.array(z.string()) })

/** A host's own WebSocket address (not a circuit through it): one a page can dial and reserve a slot on. */
const isRelayAddr = (a: string) => a.includes('/ws') && !a.includes('/p2p-circuit') && a.includes('/p2p/')

/**
 * The app's configuration from the network as it is now: the Oracle's models (their files served
 * through the app server's `/oracle` window), the relays (hosts' WebSocket addresses, from the
 * topology), and the chain from the devnet addresses file.
 */
export function networkAppConfig(init: NetworkAppConfigInit): () => Promise<AppConfig> {
  const oracle = init.oracle.replace(/\/$/, '')
  return async () => {
    const health = healthSchema.parse(await (await fetch(`${oracle}/health`, { signal: AbortSignal.timeout(5000) })).json())
    let relays = init.relays
    if (!relays) {
      const found = new Set<string>()
      for (const model of health.models) {
        const t = topologySchema.safeParse(await (await fetch(`${oracle}/api/v1/pipeline/topology?model=${encodeURIComponent(model)}`, { signal: AbortSignal.timeout(5000) })).json())
        if (!t.success) continue
        for (const n of t.data.nodes) for (const a of n.multiaddrs) if (isRelayAddr(a)) found.add(a)
      }
      relays = [...found]
    }
    const devnet = init.devnetFile ? await readDevnetFile(init.devnetFile).catch(() => undefined) : undefined
    return {
      oracle,
      oracleHttp: '/oracle',
      models: health.models.map((name) => ({ name, url: `/oracle/models/${encodeURIComponent(name)}/` })),
      relays,
      chain: devnet ? { id: devnet.chainId, rpcUrl: devnet.rpcUrl, contracts: devnet.contracts } : null,
      api: init.api ?? null,
    }
  }
}
