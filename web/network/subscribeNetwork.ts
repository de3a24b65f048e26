import type { AppConfig } from '../../shared/app/appConfig.ts'
import { pipelineEventSchemas, type Topology, type TopologyNode } from '../../shared/oracle/plumiseSchemas.ts'
import { SERVED_EVENT, servedSnapshotSchema, type ServedSnapshot } from '../../shared/oracle/servedThroughput.ts'
import { oracleRoute } from '../app/loadAppConfig.ts'

/** What the Network view shows, per model. */
export type NetworkSnapshot = {
  connected: boolean
  error?: string
  topologies: Record<string, Topology>
  /** What the agents actually served, as the Oracle counts it (absent: an Oracle that does not count it). */
  served?: ServedSnapshot
  /** Unix ms of the last event. */
  updatedAt?: number
}

/** A page's addresses are all relay circuits (and WebRTC over them); a host has direct ones. */
export const isPageNode = (n: Pick<TopologyNode, 'multiaddrs'>) => n.multiaddrs.length > 0 && n.multiaddrs.every((a) => a.includes('/p2p-circuit') || a.includes('/webrtc'))

/** Copies of each layer among ready nodes: the coverage picture's columns. */
export function layerCopies(t: Topology): number[] {
  return Array.from({ length: t.totalLayers }, (_, l) => t.nodes.filter((n) => n.ready && n.layerStart <= l && l < n.layerEnd).length)
}

/**
 * Follows the Oracle's Server-Sent Events (`/api/v1/pipeline/events`): the topology of every model
 * on connect and on each change, node status between. EventSource reconnects by itself; the
 * snapshot says when it is down.
 */
export function subscribeNetwork(config: AppConfig, onChange: (s: NetworkSnapshot) => void): () => void {
  let snapshot: NetworkSnapshot = { connected: false, topologies: {} }
  const emit = (patch: Partial<NetworkSnapshot>) => onChange((snapshot = { ...snapshot, ...patch }))
  const source = new EventSource(oracleRoute(config, '/api/v1/pipeline/events'))
  source.onopen = () => emit({ connected: true, error: undefined })
  source.onerror = () => emit({ connected: false, error: `the Oracle's event stream (${config.oracle}) is unreachable; retrying…` })
  source.addEventListener('pipeline:topology', (e) => {
    const parsed = pipelineEventSchemas['pipeline:topology'].safeParse(JSON.parse((e as MessageEvent<string>).data))
    if (!parsed.success) return
    const { timestamp, ...topology } = parsed.data
    emit({ connected: true, error: undefined, topologies: { ...snapshot.topologies, [topology.model]: topology }, updatedAt: timestamp })
  })
  source.addEventListener('pipeline:nodeStatus', (e) => {
    const parsed = pipelineEventSchemas['pipeline:nodeStatus'].safeParse(JSON.parse((e as MessageEvent<string>).data))
    if (!parsed.success) return
    const t = snapshot.topologies[parsed.data.model]
    if (!t) return
    const nodes = t.nodes.map((n) => (n.nodeAddress === parsed.data.address ? { ...n, ready: parsed.data.ready, updatedAt: new Date(parsed.data.timestamp).toISOString() } : n))
    emit({ topologies: { ...snapshot.topologies, [t.model]: { ...t, nodes } }, updatedAt: parsed.data.timestamp })
  })
  source.addEventListener(SERVED_EVENT, (e) => {
    const parsed = servedSnapshotSchema.safeParse(JSON.parse((e as MessageEvent<string>).data))
    if (parsed.success) emit({ served: parsed.data })
  })
  return () => source.close()
}
