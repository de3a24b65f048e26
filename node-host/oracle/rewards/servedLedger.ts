import { EventEmitter } from 'node:events'
import type { OrbanServedCounters } from '../../../shared/orban/orbanMessages.ts'
import type { ServedNode, ServedSnapshot } from '../../../shared/oracle/servedThroughput.ts'

export type ServedLedgerInit = {
  /** Rates are taken over this window. @default 60_000 */
  windowMs?: number
  /**
   * Most tokens/s the agent may have served: a report claiming more since the previous one is
   * clamped to it (the same bound the core books metrics by: capacity × headroom).
   */
  maxTokensPerSecond: (agentId: string) => number
  /** Agents remembered at most (the oldest report is forgotten first). @default 10_000 */
  maxAgents?: number
  /** At most one `served` event per this many ms. @default 1000 */
  emitEveryMs?: number
  /** Clock, unix ms. @default Date.now */
  now?: () => number
}

/** Who reports: what the channel knows of the agent, not what the report says. */
export type ServedAgent = {
  agentId: string
  model: string
  peerId: string | null
  kind: 'page' | 'host'
  /** When its channel registered (unix ms): the first report's counters are bounded by the time since. */
  connectedAt: number
}

export type ServedReport = {
  served: OrbanServedCounters | undefined
  /** TASK_PROGRESS `throughput_tokens_per_sec`. */
  throughput: number | null
}

/** What one report added, after the bounds. */
export type ServedBooking = {
  tokens: number
  steps: number
  sessions: number
  /** Some claim was above what the bounds allow. */
  clamped: boolean
  /** Accepted since the Oracle first heard of the agent (what a wallet is credited from). */
  totals: { tokens: number; steps: number; sessions: number; seconds: number }
}

export type ServedLedger = {
  /** Books a report (undefined when it carries no counters). Never trusts it beyond the bounds. */
  report(agent: ServedAgent, report: ServedReport): ServedBooking | undefined
  /** The agent left the network: it is no longer shown. */
  forget(agentId: string): void
  /** The wallet the agent's work is credited to (shown in the snapshot). */
  setWallet(agentId: string, wallet: string | null): void
  snapshot(): ServedSnapshot
  /** Tokens accepted since start by kind, forgotten agents included (never decreases: a Prometheus counter). */
  acceptedTokens(): Record<ServedAgent['kind'], number>
  /** `served`: a snapshot, at most once per `emitEveryMs` while reports come in. */
  readonly events: EventEmitter<{ served: [ServedSnapshot] }>
  close(): void
}

type Entry = {
  agent: ServedAgent
  /** The agent's raw counters at its last report. */
  raw: OrbanServedCounters | undefined
  lastAt: number
  firstAt: number
  totals: { tokens: number; steps: number; sessions: number }
  /** Accepted tokens per report inside the window. */
  samples: Array<{ at: number; tokens: number }>
  reported: number | null
  wallet: string | null
}

/**
 * The Oracle's count of what its agents served. Agents report cumulative counters (tokens, steps,
 * sessions since they started); the ledger takes the rise since the previous report, and bounds it
 * by what is possible: tokens ≤ elapsed × the agent's capacity, steps ≤ tokens (a step forwards at
 * least one position), sessions ≤ steps. Counters that go backwards mean the agent restarted: they
 * count from zero again. Rates are the accepted tokens in the last window over the window.
 */
export function createServedLedger(init: ServedLedgerInit): ServedLedger {
  const windowMs = init.windowMs ?? 60_000
  const maxAgents = init.maxAgents ?? 10_000
  const emitEveryMs = init.emitEveryMs ?? 1000
  const now = init.now ?? Date.now
  const entries = new Map<string, Entry>()
  const events = new EventEmitter<{ served: [ServedSnapshot] }>()
  events.setMaxListeners(0)
  let timer: ReturnType<typeof setTimeout> | undefined
  const accepted: Record<ServedAgent['kind'], number> = { page: 0, host: 0 }

  const changed = () => {
    if (timer || events.listenerCount('served') === 0) return
    timer = setTimeout(() => {
      timer = undefined
      events.emit('served', snapshot())
    }, emitEveryMs)
    timer.unref?.()
  }

  const windowTokens = (e: Entry, t: number) => {
    while (e.samples.length && e.samples[0]!.at <= t - windowMs) e.samples.shift()
    return e.samples.reduce((s, x) => s + x.tokens, 0)
  }

  function snapshot(): ServedSnapshot {
    const t = now()
    const nodes: ServedNode[] = [...entries.values()].map((e) => ({
      id: e.agent.agentId,
      model: e.agent.model,
      peerId: e.agent.peerId,
      kind: e.agent.kind,
      tokensPerSecond: Math.round((windowTokens(e, t) / (windowMs / 1000)) * 100) / 100,
      reportedTokensPerSecond: e.reported,
      tokens: e.totals.tokens,
      steps: e.totals.steps,
      sessions: e.totals.sessions,
      updatedAt: e.lastAt,
      wallet: e.wallet,
    }))
    return {
      windowSeconds: windowMs / 1000,
      nodes,
      totalTokensPerSecond: Math.round(nodes.reduce((s, n) => s + n.tokensPerSecond, 0) * 100) / 100,
      totalTokens: nodes.reduce((s, n) => s + n.tokens, 0),
      timestamp: t,
    }
  }

  return {
    events,
    snapshot,
    acceptedTokens: () => ({ ...accepted }),
    report(agent, r) {
      const t = now()
      let e = entries.get(agent.agentId)
      const max = Math.max(0, init.maxTokensPerSecond(agent.agentId))
      if (!e) {
        e = { agent, raw: undefined, lastAt: Math.min(t, agent.connectedAt), firstAt: t, totals: { tokens: 0, steps: 0, sessions: 0 }, samples: [], reported: null, wallet: null }
        entries.set(agent.agentId, e)
        if (entries.size > maxAgents) {
          const oldest = [...entries.values()].reduce((a, b) => (a.lastAt <= b.lastAt ? a : b))
          entries.delete(oldest.agent.agentId)
        }
      }
      e.agent = agent
      e.reported = r.throughput === null || !Number.isFinite(r.throughput) ? null : Math.min(Math.max(0, r.throughput), max)
      if (!r.served) {
        e.lastAt = t
        changed()
        return undefined
      }
      const prev = e.raw
      // A restart (or a first report) counts from zero; its counters cover the time since it connected.
      const restarted = !prev || r.served.tokens < prev.tokens || r.served.steps < prev.steps || r.served.sessions < prev.sessions
      const base = restarted ? { tokens: 0, steps: 0, sessions: 0 } : prev
      if (restarted && prev) e.lastAt = Math.min(t, Math.max(e.lastAt, agent.connectedAt))
      const seconds = Math.max(0, t - e.lastAt) / 1000
      const claimed = { tokens: r.served.tokens - base.tokens, steps: r.served.steps - base.steps, sessions: r.served.sessions - base.sessions }
      const tokens = Math.min(claimed.tokens, Math.floor(seconds * max))
      const steps = Math.min(claimed.steps, tokens)
      const sessions = Math.min(claimed.sessions, steps)
      e.raw = { ...r.served }
      e.lastAt = t
      e.totals = { tokens: e.totals.tokens + tokens, steps: e.totals.steps + steps, sessions: e.totals.sessions + sessions }
      if (tokens > 0) e.samples.push({ at: t, tokens })
      accepted[agent.kind] += tokens
      windowTokens(e, t)
      changed()
      return {
        tokens,
        steps,
        sessions,
        clamped: tokens < claimed.tokens || steps < claimed.steps || sessions < claimed.sessions,
        totals: { ...e.totals, seconds: (t - e.firstAt) / 1000 },
      }
    },
    forget(agentId) {
      if (entries.delete(agentId)) changed()
    },
    setWallet(agentId, wallet) {
      const e = entries.get(agentId)
      if (e && e.wallet !== wallet) {
        e.wallet = wallet
        changed()
      }
    },
    close() {
      clearTimeout(timer)
      timer = undefined
    },
  }
}
