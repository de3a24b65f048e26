import { Counter, Gauge, Registry } from 'prom-client'
import type { OracleCore } from './createOracleCore.ts'
import type { OracleStats } from './createOracleServer.ts'
import type { OrbanChannel, OrbanChannelStats } from './orban/orbanChannel.ts'
import type { ServedLedger } from './rewards/servedLedger.ts'

/**
 * The Oracle's Prometheus metrics (`GET /metrics`): nodes by state, layer coverage per model,
 * assignment changes, HTTP refusals by reason, and the Orban channel's connection counters. All
 * but the assignment counter are read from the core, the server and the channel at scrape time.
 */

export type OracleMetricsSources = {
  core: OracleCore
  /** The HTTP server's counters (refusals by reason). */
  server: () => OracleStats | undefined
  /** The Orban channel (connected agents and its counters); undefined until it exists. */
  orban: () => OrbanChannel | undefined
  /** What the agents served, as the Oracle counted it (servedLedger.ts). */
  served?: Pick<ServedLedger, 'snapshot' | 'acceptedTokens'>
}

export type OracleMetrics = {
  readonly registry: Registry
  render(): Promise<{ contentType: string; body: string }>
  /** Stops counting assignment changes. */
  close(): void
}

/** The channel's counters exported (the rest stay in /api/v1/oracle/stats). */
const CHANNEL_COUNTERS: Array<keyof OrbanChannelStats> = [
  'connections',
  'authFailures',
  'unauthenticated',
  'malformed',
  'invalid',
  'oversize',
  'rateLimited',
  'closedForErrors',
  'errorsSent',
  'messagesIn',
  'messagesOut',
  'handshakeTimeouts',
  'powVerified',
  'powRefused',
  'badSubprotocol',
  'overloaded',
  'perIpRefused',
  'meshRefused',
  'unknownTasks',
]
const snake = (s: string) => s.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`)

export function createOracleMetrics(sources: OracleMetricsSources): OracleMetrics {
  const { core } = sources
  const registry = new Registry()
  const registers = [registry]

  new Gauge({
    name: 'shardmesh_oracle_nodes',
    help: 'Nodes known to the Oracle by model, kind (plumise, orban) and state (ready, assigned: loading its range, idle: no range).',
    labelNames: ['model', 'kind', 'state'] as const,
    registers,
    collect() {
      this.reset()
      for (const m of core.models()) {
        for (const kind of ['plumise', 'orban'] as const) {
          const nodes = core.nodes(m.name).filter((n) => n.kind === kind)
          this.set({ model: m.name, kind, state: 'ready' }, nodes.filter((n) => n.range && n.ready).length)
          this.set({ model: m.name, kind, state: 'assigned' }, nodes.filter((n) => n.range && !n.ready).length)
          this.set({ model: m.name, kind, state: 'idle' }, nodes.filter((n) => !n.range).length)
        }
      }
    },
  })
  new Gauge({
    name: 'shardmesh_oracle_orban_agents',
    help: 'Registered Orban agents with an open socket, by state (active, stale: silent past the heartbeat timeout).',
    labelNames: ['state'] as const,
    registers,
    collect() {
      const agents = sources.orban()?.agents() ?? []
      this.set({ state: 'active' }, agents.filter((a) => !a.stale).length)
      this.set({ state: 'stale' }, agents.filter((a) => a.stale).length)
    },
  })
  const perLayer = (model: string, ready: boolean) => {
    const info = core.models().find((m) => m.name === model)!
    const copies = new Array<number>(info.numLayers).fill(0)
    for (const n of core.nodes(model)) {
      if (!n.range || (ready && !n.ready)) continue
      for (let l = n.range.start; l < Math.min(n.range.end, info.numLayers); l++) copies[l]!++
    }
    return copies
  }
  new Gauge({
    name: 'shardmesh_oracle_model_layers',
    help: 'Decoder layers of each served model.',
    labelNames: ['model'] as const,
    registers,
    collect() {
      for (const m of core.models()) this.set({ model: m.name }, m.numLayers)
    },
  })
  new Gauge({
    name: 'shardmesh_oracle_layers_covered',
    help: 'Layers of the model held by at least one ready node (the model answers when this equals shardmesh_oracle_model_layers).',
    labelNames: ['model'] as const,
    registers,
    collect() {
      for (const m of core.models()) this.set({ model: m.name }, perLayer(m.name, true).filter((c) => c > 0).length)
    },
  })
  new Gauge({
    name: 'shardmesh_oracle_layer_replicas_min',
    help: 'Fewest ready copies of any layer of the model (0: some layer is not served; 1: no spare).',
    labelNames: ['model'] as const,
    registers,
    collect() {
      for (const m of core.models()) {
        const copies = perLayer(m.name, true)
        this.set({ model: m.name }, copies.length ? Math.min(...copies) : 0)
      }
    },
  })
  const assignments = new Counter({
    name: 'shardmesh_oracle_assignments_total',
    help: 'Layer-range changes the Oracle made, by model and kind (assigned: a node got a new range; removed: it lost its range).',
    labelNames: ['model', 'change'] as const,
    registers,
  })
  const onAssignment = (c: { model: string; range: unknown }) => assignments.inc({ model: c.model, change: c.range ? 'assigned' : 'removed' })
  core.events.on('assignment', onAssignment)
  new Counter({
    name: 'shardmesh_oracle_http_refusals_total',
    help: 'HTTP requests the Oracle refused, by reason.',
    labelNames: ['reason'] as const,
    registers,
    collect() {
      this.reset()
      for (const [reason, n] of Object.entries(sources.server()?.refused.byReason ?? {})) this.inc({ reason }, n ?? 0)
    },
  })
  new Counter({
    name: 'shardmesh_oracle_http_requests_total',
    help: 'HTTP requests the Oracle received.',
    registers,
    collect() {
      this.reset()
      this.inc(sources.server()?.requests ?? 0)
    },
  })
  new Gauge({
    name: 'shardmesh_oracle_orban_connections_open',
    help: 'Orban agent sockets open now (registered or not).',
    registers,
    collect() {
      this.set(sources.orban()?.stats().open ?? 0)
    },
  })
  new Counter({
    name: 'shardmesh_oracle_orban_events_total',
    help: 'Orban channel counters since start, by event (connections, auth_failures, malformed, rate_limited, messages_in, ...).',
    labelNames: ['event'] as const,
    registers,
    collect() {
      this.reset()
      const stats = sources.orban()?.stats()
      if (!stats) return
      for (const key of CHANNEL_COUNTERS) this.inc({ event: snake(key) }, stats[key])
    },
  })
  new Gauge({
    name: 'shardmesh_oracle_served_tokens_per_second',
    help: 'Tokens/s each agent served over the last window, as the Oracle counted its reports (bounded by its capacity; not its benchmark).',
    labelNames: ['agent', 'kind', 'model'] as const,
    registers,
    collect() {
      this.reset()
      for (const n of sources.served?.snapshot().nodes ?? []) this.set({ agent: n.id, kind: n.kind, model: n.model }, n.tokensPerSecond)
    },
  })
  new Gauge({
    name: 'shardmesh_oracle_network_served_tokens_per_second',
    help: 'Tokens/s the whole network served over the last window (the sum over agents).',
    registers,
    collect() {
      this.set(sources.served?.snapshot().totalTokensPerSecond ?? 0)
    },
  })
  new Counter({
    name: 'shardmesh_oracle_served_tokens_total',
    help: 'Tokens the agents served since the Oracle started, by kind (page, host), as accepted from their reports.',
    labelNames: ['kind'] as const,
    registers,
    collect() {
      this.reset()
      const accepted = sources.served?.acceptedTokens()
      if (accepted) for (const kind of ['page', 'host'] as const) this.inc({ kind }, accepted[kind])
    },
  })

  return {
    registry,
    async render() {
      return { contentType: registry.contentType, body: await registry.metrics() }
    },
    close: () => void core.events.off('assignment', onAssignment),
  }
}
