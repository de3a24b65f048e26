import type { OrbanPayload, OrbanPricing } from '../../../shared/orban/orbanMessages.ts'

/**
 * What the Orban channel persists: which key owns which agent id, the agents' registrations,
 * earnings (so totals survive restarts), metrics batches and proof-of-work results.
 * Times are unix milliseconds.
 */

export type OrbanRegistrationRecord = OrbanPayload<'AGENT_REGISTER'>

export type StoredOrbanAgent = {
  agentId: string
  /** Base64 of the Ed25519 public key bound to this id on first authentication. */
  publicKey: string
  registration: OrbanRegistrationRecord | null
  pricing: OrbanPricing | null
  firstSeen: number
  lastSeen: number
}

export type StoredOrbanEarnings = {
  agentId: string
  taskId: string
  earnings: OrbanPayload<'EARNINGS_RECORD'>['earnings']
  status: OrbanPayload<'EARNINGS_RECORD'>['status']
  estimatedPayoutDate: string
  createdAt: number
  updatedAt: number
}

export type OrbanEarningsSummary = {
  /** Sum of final amounts, every status. */
  totalUsd: number
  /** Sum of final amounts of records created since 00:00 UTC of `now`. */
  todayUsd: number
  /** Sum of final amounts not yet paid (Pending and Confirmed). */
  pendingUsd: number
  /** Newest first. */
  history: StoredOrbanEarnings[]
}

export type StoredOrbanMetrics = {
  agentId: string
  receivedAt: number
  timeRange: OrbanPayload<'METRICS_BATCH'>['time_range']
  aggregated: OrbanPayload<'METRICS_BATCH'>['aggregated_metrics']
}

export type StoredOrbanPow = {
  challengeId: string
  agentId: string
  difficulty: number
  verified: boolean
  /** What the agent reported; null when it never answered. */
  computationTimeMs: number | null
  issuedAt: number
  answeredAt: number | null
}

export interface OrbanStore {
  /**
   * Binds `publicKey` to `agentId` unless the id already has a key; answers the key bound
   * (the earlier one when there was one). Atomic: the first key wins.
   */
  bindAgentKey(agentId: string, publicKey: string, at: number): Promise<string>
  /** Records a registration and its pricing (the agent's key must be bound first). */
  saveRegistration(agentId: string, registration: OrbanRegistrationRecord, pricing: OrbanPricing, at: number): Promise<void>
  touchAgent(agentId: string, at: number): Promise<void>
  agent(agentId: string): Promise<StoredOrbanAgent | undefined>
  agents(): Promise<StoredOrbanAgent[]>

  /** Inserts, or updates the status and amounts of, the record for (agent, task). */
  putEarnings(agentId: string, record: OrbanPayload<'EARNINGS_RECORD'>, at: number): Promise<void>
  earnings(agentId: string, now: number, historyLimit?: number): Promise<OrbanEarningsSummary>

  addMetrics(agentId: string, batch: OrbanPayload<'METRICS_BATCH'>, at: number): Promise<void>
  /** Newest first. */
  metrics(agentId: string, limit?: number): Promise<StoredOrbanMetrics[]>

  /** Inserts or replaces by challenge id. */
  putPow(result: StoredOrbanPow): Promise<void>
  /** Newest first. */
  powResults(agentId: string, limit?: number): Promise<StoredOrbanPow[]>

  /**
   * Deletes metrics batches and proof-of-work results older than `before` (unix ms): history only,
   * nothing a restart reads. Agents (their key binding) and earnings (their totals) are kept.
   */
  prune(before: number): Promise<{ metrics: number; pow: number }>
}
