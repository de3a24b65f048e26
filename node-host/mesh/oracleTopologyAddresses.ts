import { topologySchema } from '../../shared/oracle/plumiseSchemas.ts'

export type OracleTopologyAddressesInit = {
  /** The Oracle's base URL. */
  oracle: string
  model: string
  /** This peer's id: left out of what is returned. */
  self: string
}

/**
 * A peer-table discovery source: one address of each other peer the Oracle lists for `model`
 * (TCP before WebSockets, where a peer has both). The Oracle's answer is untrusted: a document that
 * is not a topology, or no answer, names no peers.
 */
export function oracleTopologyAddresses(init: OracleTopologyAddressesInit): () => Promise<string[]> {
  return async () => {
    const res = await fetch(new URL(`/api/v1/pipeline/topology?model=${encodeURIComponent(init.model)}`, init.oracle), { signal: AbortSignal.timeout(5000) })
    if (!res.ok) return []
    const parsed = topologySchema.safeParse(await res.json().catch(() => undefined))
    if (!parsed.success) return []
    return parsed.data.nodes
      .filter((n) => n.peerId && n.peerId !== init.self && n.multiaddrs.length)
      .map((n) => [...n.multiaddrs].sort((a, b) => Number(a.includes('/ws')) - Number(b.includes('/ws')))[0]!)
  }
}
