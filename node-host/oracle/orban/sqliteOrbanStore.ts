import type { DatabaseSync } from 'node:sqlite'
import type { OrbanPayload } from '../../../shared/orban/orbanMessages.ts'
import type { OrbanStore, StoredOrbanAgent, StoredOrbanEarnings, StoredOrbanMetrics, StoredOrbanPow } from './orbanStore.ts'

// Tables of the Orban channel, prefixed so they share a file with the Oracle's own.
const SCHEMA = `
CREATE TABLE IF NOT EXISTS orban_agents (
  agent_id TEXT PRIMARY KEY,
  public_key TEXT NOT NULL,
  registration TEXT,
  pricing TEXT,
  first_seen INTEGER NOT NULL,
  last_seen INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS orban_earnings (
  agent_id TEXT NOT NULL,
  task_id TEXT NOT NULL,
  status TEXT NOT NULL,
  gpu_hours REAL NOT NULL,
  rate_usd_per_hour REAL NOT NULL,
  amount_usd REAL NOT NULL,
  bonus_multiplier REAL NOT NULL,
  final_amount_usd REAL NOT NULL,
  estimated_payout_date TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL,
  PRIMARY KEY (agent_id, task_id)
);
CREATE INDEX IF NOT EXISTS orban_earnings_created ON orban_earnings(agent_id, created_at);
CREATE TABLE IF NOT EXISTS orban_metrics (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  agent_id TEXT NOT NULL,
  received_at INTEGER NOT NULL,
  range_start TEXT NOT NULL,
  range_end TEXT NOT NULL,
  tasks_completed INTEGER NOT NULL,
  tasks_failed INTEGER NOT NULL,
  total_gpu_hours REAL NOT NULL,
  avg_gpu_utilization REAL NOT NULL,
  total_energy_kwh REAL NOT NULL,
  earnings_usd REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS orban_metrics_agent ON orban_metrics(agent_id, id);
CREATE INDEX IF NOT EXISTS orban_metrics_received ON orban_metrics(received_at);
CREATE TABLE IF NOT EXISTS orban_pow (
  challenge_id TEXT PRIMARY KEY,
  agent_id TEXT NOT NULL,
  difficulty INTEGER NOT NULL,
  verified INTEGER NOT NULL,
  computation_time_ms INTEGER,
  issued_at INTEGER NOT NULL,
  answered_at INTEGER
);
CREATE INDEX IF NOT EXISTS orban_pow_agent ON orban_pow(agent_id, issued_at);
CREATE INDEX IF NOT EXISTS orban_pow_issued ON orban_pow(issued_at);
`

type AgentRow = { agent_id: string; public_key: string; registration: string | null; pricing: string | null; first_seen: number; last_seen: number }
type EarningsRow = {
  agent_id: string
  task_id: string
  status: string
  gpu_hours: number
  rate_usd_per_hour: number
  amount_usd: number
  bonus_multiplier: number
  final_amount_usd: number
  estimated_payout_date: string
  created_at: number
  updated_at: number
}
type MetricsRow = {
  agent_id: string
  received_at: number
  range_start: string
  range_end: string
  tasks_completed: number
  tasks_failed: number
  total_gpu_hours: number
  avg_gpu_utilization: number
  total_energy_kwh: number
  earnings_usd: number
}
type PowRow = { challenge_id: string; agent_id: string; difficulty: number; verified: number; computation_time_ms: number | null; issued_at: number; answered_at: number | null }

const toAgent = (r: AgentRow): StoredOrbanAgent => ({
  agentId: r.agent_id,
  publicKey: r.public_key,
  registration: r.registration === null ? null : (JSON.parse(r.registration) as StoredOrbanAgent['registration']),
  pricing: r.pricing === null ? null : (JSON.parse(r.pricing) as StoredOrbanAgent['pricing']),
  firstSeen: r.first_seen,
  lastSeen: r.last_seen,
})

const toEarnings = (r: EarningsRow): StoredOrbanEarnings => ({
  agentId: r.agent_id,
  taskId: r.task_id,
  earnings: {
    gpu_hours: r.gpu_hours,
    rate_usd_per_hour: r.rate_usd_per_hour,
    amount_usd: r.amount_usd,
    bonus_multiplier: r.bonus_multiplier,
    final_amount_usd: r.final_amount_usd,
  },
  status: r.status as StoredOrbanEarnings['status'],
  estimatedPayoutDate: r.estimated_payout_date,
  createdAt: r.created_at,
  updatedAt: r.updated_at,
})

const toMetrics = (r: MetricsRow): StoredOrbanMetrics => ({
  agentId: r.agent_id,
  receivedAt: r.received_at,
  timeRange: { start: r.range_start, end: r.range_end },
  aggregated: {
    tasks_completed: r.tasks_completed,
    tasks_failed: r.tasks_failed,
    total_gpu_hours: r.total_gpu_hours,
    avg_gpu_utilization: r.avg_gpu_utilization,
    total_energy_kwh: r.total_energy_kwh,
    earnings_usd: r.earnings_usd,
  },
})

const toPow = (r: PowRow): StoredOrbanPow => ({
  challengeId: r.challenge_id,
  agentId: r.agent_id,
  difficulty: r.difficulty,
  verified: r.verified === 1,
  computationTimeMs: r.computation_time_ms,
  issuedAt: r.issued_at,
  answeredAt: r.answered_at,
})

const DAY_MS = 86_400_000

/** The Orban channel's store in a `node:sqlite` database owned by the caller (tables `orban_*`). */
export function createSqliteOrbanStore(db: DatabaseSync): OrbanStore {
  db.exec(SCHEMA)
  const q = {
    bindKey: db.prepare('INSERT OR IGNORE INTO orban_agents (agent_id, public_key, first_seen, last_seen) VALUES (?, ?, ?, ?)'),
    key: db.prepare('SELECT public_key FROM orban_agents WHERE agent_id = ?'),
    saveRegistration: db.prepare('UPDATE orban_agents SET registration = ?, pricing = ?, last_seen = ? WHERE agent_id = ?'),
    touch: db.prepare('UPDATE orban_agents SET last_seen = max(last_seen, ?) WHERE agent_id = ?'),
    agent: db.prepare('SELECT * FROM orban_agents WHERE agent_id = ?'),
    agents: db.prepare('SELECT * FROM orban_agents ORDER BY first_seen, agent_id'),
    putEarnings: db.prepare(
      `INSERT INTO orban_earnings (agent_id, task_id, status, gpu_hours, rate_usd_per_hour, amount_usd, bonus_multiplier, final_amount_usd, estimated_payout_date, created_at, updated_at)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
       ON CONFLICT(agent_id, task_id) DO UPDATE SET status = excluded.status, gpu_hours = excluded.gpu_hours, rate_usd_per_hour = excluded.rate_usd_per_hour,
         amount_usd = excluded.amount_usd, bonus_multiplier = excluded.bonus_multiplier, final_amount_usd = excluded.final_amount_usd,
         estimated_payout_date = excluded.estimated_payout_date, updated_at = excluded.updated_at`,
    ),
    earningsTotals: db.prepare(
      `SELECT coalesce(sum(final_amount_usd), 0) AS total,
              coalesce(sum(CASE WHEN created_at >= ? THEN final_amount_usd ELSE 0 END), 0) AS today,
              coalesce(sum(CASE WHEN status <> 'Paid' THEN final_amount_usd ELSE 0 END), 0) AS pending
       FROM orban_earnings WHERE agent_id = ?`,
    ),
    earningsHistory: db.prepare('SELECT * FROM orban_earnings WHERE agent_id = ? ORDER BY created_at DESC, task_id DESC LIMIT ?'),
    addMetrics: db.prepare(
      `INSERT INTO orban_metrics (agent_id, received_at, range_start, range_end, tasks_completed, tasks_failed, total_gpu_hours, avg_gpu_utilization, total_energy_kwh, earnings_usd)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
    ),
    metrics: db.prepare('SELECT * FROM orban_metrics WHERE agent_id = ? ORDER BY id DESC LIMIT ?'),
    putPow: db.prepare(
      `INSERT OR REPLACE INTO orban_pow (challenge_id, agent_id, difficulty, verified, computation_time_ms, issued_at, answered_at) VALUES (?, ?, ?, ?, ?, ?, ?)`,
    ),
    pow: db.prepare('SELECT * FROM orban_pow WHERE agent_id = ? ORDER BY issued_at DESC, challenge_id DESC LIMIT ?'),
    pruneMetrics: db.prepare('DELETE FROM orban_metrics WHERE received_at < ?'),
    prunePow: db.prepare('DELETE FROM orban_pow WHERE issued_at < ?'),
  }

  return {
    async bindAgentKey(agentId, publicKey, at) {
      q.bindKey.run(agentId, publicKey, at, at)
      return (q.key.get(agentId) as { public_key: string }).public_key
    },
    async saveRegistration(agentId, registration, pricing, at) {
      q.saveRegistration.run(JSON.stringify(registration), JSON.stringify(pricing), at, agentId)
    },
    async touchAgent(agentId, at) {
      q.touch.run(at, agentId)
    },
    async agent(agentId) {
      const row = q.agent.get(agentId) as AgentRow | undefined
      return row && toAgent(row)
    },
    async agents() {
      return (q.agents.all() as AgentRow[]).map(toAgent)
    },
    async putEarnings(agentId, record, at) {
      const e = record.earnings
      q.putEarnings.run(
        agentId,
        record.task_id,
        record.status,
        e.gpu_hours,
        e.rate_usd_per_hour,
        e.amount_usd,
        e.bonus_multiplier,
        e.final_amount_usd,
        record.estimated_payout_date,
        at,
        at,
      )
    },
    async earnings(agentId, now, historyLimit = 100) {
      const startOfDay = Math.floor(now / DAY_MS) * DAY_MS
      const totals = q.earningsTotals.get(startOfDay, agentId) as { total: number; today: number; pending: number }
      return {
        totalUsd: totals.total,
        todayUsd: totals.today,
        pendingUsd: totals.pending,
        history: (q.earningsHistory.all(agentId, historyLimit) as EarningsRow[]).map(toEarnings),
      }
    },
    async addMetrics(agentId, batch: OrbanPayload<'METRICS_BATCH'>, at) {
      const m = batch.aggregated_metrics
      q.addMetrics.run(
        agentId,
        at,
        batch.time_range.start,
        batch.time_range.end,
        m.tasks_completed,
        m.tasks_failed,
        m.total_gpu_hours,
        m.avg_gpu_utilization,
        m.total_energy_kwh,
        m.earnings_usd,
      )
    },
    async metrics(agentId, limit = 100) {
      return (q.metrics.all(agentId, limit) as MetricsRow[]).map(toMetrics)
    },
    async putPow(r) {
      q.putPow.run(r.challengeId, r.agentId, r.difficulty, r.verified ? 1 : 0, r.computationTimeMs, r.issuedAt, r.answeredAt)
    },
    async prune(before) {
      return { metrics: Number(q.pruneMetrics.run(before).changes), pow: Number(q.prunePow.run(before).changes) }
    },
    async powResults(agentId, limit = 100) {
      return (q.pow.all(agentId, limit) as PowRow[]).map(toPow)
    },
  }
}
