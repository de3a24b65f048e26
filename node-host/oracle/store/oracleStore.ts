/**
 * What the Oracle persists, as an interface a server database could implement instead of the
 * embedded SQLite one (`sqliteOracleStore.ts`). Every method is async for that reason. The
 * Oracle core is the only writer and serializes its calls; `acceptTimestamp` must still be
 * atomic on its own (the HTTP routes call it directly).
 */

export type LayerRange = { start: number; end: number }

/** 'plumise': registered over the HTTP API, id = lowercase wallet. 'orban': the WebSocket channel, id = agent_id. */
export type NodeKind = 'plumise' | 'orban'

export type StoredNode = {
  id: string
  kind: NodeKind
  model: string
  /** Small stable integer, the topology's `id`. */
  seq: number
  grpcEndpoint: string
  httpEndpoint: string
  ramMb: number
  vramMb: number
  device: string
  benchmarkTokPerSec: number
  ready: boolean
  /** libp2p identity and addresses of a shardmesh node host, when it gave them. */
  peerId: string | null
  multiaddrs: string[]
  /** Unix ms: first registration, last change of the record. */
  createdAt: number
  updatedAt: number
}

export type StoredAssignment = { nodeId: string; model: string; range: LayerRange; updatedAt: number }

/** The raw cumulative counters an agent last reported (deltas are taken against them). */
export type AgentCounters = {
  agent: string
  tokens: number
  requests: number
  /** null: last reported by a build that did not keep it (the next report's uptime is taken whole). */
  uptimeSeconds: number | null
  epoch: number
  reportedAt: number
}

/** Sums of the deltas an agent reported in one epoch. */
export type MetricsTotals = {
  agent: string
  epoch: number
  tokens: number
  requests: number
  /** Σ avgLatencyMs × requests, so the mean over the epoch is latencyMsSum / requests. */
  latencyMsSum: number
  /** The agent's cumulative uptime as it last reported it (a claim, not a credit). */
  uptimeSeconds: number
  /** Σ uptime credited in this epoch after the bounds; null for rows booked before bounding. */
  uptimeCredited: number | null
  reports: number
  updatedAt: number
}

export type StoredProof = {
  agent: string
  epoch: number
  modelHash: string
  inputHash: string
  outputHash: string
  tokenCount: number
  /** keccak256(modelHash ‖ inputHash ‖ outputHash ‖ agent), computed by the Oracle. */
  proofHash: string
  /** The verifyInference transaction the agent named (lowercase), if any. */
  txHash?: string | null
  createdAt: number
}

/** The chain's word on a stored proof (see rewardReporter.ts); null until checked. */
export type ProofVerdict = 'verified' | 'refused' | 'duplicate'

/** A proof as stored: its row id and verdict. */
export type StoredProofRow = StoredProof & { id: number; txHash: string | null; verdict: ProofVerdict | null }

/**
 * What a node's observed serving time still allows it to book (see createOracleCore): seconds of
 * uptime and tokens, added while the Oracle sees it serving, taken by the reports booked against it.
 */
export type NodeBudget = { nodeId: string; servingSeconds: number; tokens: number; updatedAt: number }

/** One accepted metrics report, written at once (counters, totals, proofs and the node's budget together). */
export type MetricsEntry = {
  counters: AgentCounters
  /** What is booked (after the bounds). */
  delta: { tokens: number; requests: number; latencyMsSum: number; uptimeSeconds: number }
  /** The cumulative uptime the agent reported. */
  uptimeSeconds: number
  proofs: StoredProof[]
  budget?: NodeBudget
}

/** Rows `prune` deletes: older than `before` (unix ms), and for per-epoch rows of epochs below `epochBelow` only. */
export type PruneParameters = {
  before: number
  /** Epochs from this one on are kept whatever their age (the reward reporter still needs them). */
  epochBelow: number
  /** Replay-guard entries whose last timestamp (unix s) is below this: older than any timestamp the window still admits. */
  replayBeforeS: number
}

export type PruneResult = { proofs: number; metricsTotals: number; agentCounters: number; replayGuard: number; nodeBudgets: number }

export interface OracleStore {
  loadNodes(): Promise<StoredNode[]>
  /** Inserts or replaces by id. */
  upsertNode(node: StoredNode): Promise<void>
  /** Removes the node and its assignment. */
  deleteNode(id: string): Promise<void>

  loadAssignments(): Promise<StoredAssignment[]>
  /** Replaces every assignment of `model` by `ranges` (node id → range), atomically. */
  replaceAssignments(model: string, ranges: ReadonlyMap<string, LayerRange>, at: number): Promise<void>

  /**
   * Replay guard: when `timestamp` is strictly greater than the last accepted one for
   * (`address`, `scope`), records it and answers true; otherwise false. Atomic.
   */
  acceptTimestamp(address: string, scope: string, timestamp: number): Promise<boolean>
  lastTimestamp(address: string, scope: string): Promise<number | undefined>

  agentCounters(agent: string): Promise<AgentCounters | undefined>
  recordMetrics(entry: MetricsEntry): Promise<void>
  /** The agent's totals for one epoch, or every epoch newest first. */
  metricsTotals(agent: string, epoch?: number): Promise<MetricsTotals[]>
  proofs(agent: string, limit: number): Promise<StoredProof[]>
  /** Every agent's totals for one epoch (the reward reporter's input). */
  epochTotals(epoch: number): Promise<MetricsTotals[]>
  /** Every proof booked to one epoch, oldest first. */
  epochProofs(epoch: number): Promise<StoredProofRow[]>
  /** Rows with this proof hash, oldest first (a proof reported twice counts once). */
  proofsByHash(proofHash: string): Promise<StoredProofRow[]>
  setProofVerdict(id: number, verdict: ProofVerdict): Promise<void>

  loadBudgets(): Promise<NodeBudget[]>
  /** Inserts or replaces each by node id. */
  saveBudgets(budgets: NodeBudget[]): Promise<void>

  /** Deletes old rows (bounded growth); what a restart needs is never old enough (see PruneParameters). */
  prune(p: PruneParameters): Promise<PruneResult>

  /** Generic key/value for other services (the Orban channel, the chain bridge); namespace the keys. */
  getValue(key: string): Promise<string | undefined>
  setValue(key: string, value: string): Promise<void>
  deleteValue(key: string): Promise<void>

  close(): Promise<void>
}
