import type { AppConfig } from '../../shared/app/appConfig.ts'
import { topologySchema } from '../../shared/oracle/plumiseSchemas.ts'
import { oracleRoute } from '../app/loadAppConfig.ts'
import { startPageMesh, type PageMesh } from './startPageMesh.ts'

let current: { model: string; mesh: Promise<PageMesh> } | undefined

/** Every peer's best address from the Oracle's topology (not this page's own). */
export function topologyAddresses(config: AppConfig, model: string, self: () => string | undefined) {
  return async (): Promise<string[]> => {
    const res = await fetch(oracleRoute(config, `/api/v1/pipeline/topology?model=${encodeURIComponent(model)}`), { signal: AbortSignal.timeout(5000) })
    if (!res.ok) return []
    const parsed = topologySchema.safeParse(await res.json())
    if (!parsed.success) return []
    return parsed.data.nodes
      .filter((n) => n.peerId && n.peerId !== self() && n.multiaddrs.length)
      .map((n) => [...n.multiaddrs].sort((a, b) => Number(a.includes('/p2p-circuit')) - Number(b.includes('/p2p-circuit')))[0]!)
  }
}

/**
 * The page's one mesh peer, shared by the contributor (which serves a shard on it) and the chat
 * (which originates generations on it); started on first use. A failed start is forgotten, so
 * the next use tries again.
 */
export function sharedPageMesh(config: AppConfig, model: string): Promise<PageMesh> {
  if (current?.model === model) return current.mesh
  const modelUrl = config.models.find((m) => m.name === model)?.url
  if (!modelUrl) return Promise.reject(new Error(`the network does not serve "${model}"`))
  let peerId: string | undefined
  const mesh = startPageMesh({ model, modelUrl, relays: config.relays, discover: topologyAddresses(config, model, () => peerId) }).then((m) => ((peerId = m.peerId), m))
  current = { model, mesh }
  mesh.catch(() => {
    if (current?.mesh === mesh) current = undefined
  })
  return mesh
}
