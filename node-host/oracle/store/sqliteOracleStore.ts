import type { DatabaseSync } from 'node:sqlite'
import { openOracleDatabase, transaction } from './oracleDatabase.ts'
import type { AgentCounters, LayerRange, MetricsEntry, MetricsTotals, NodeBudget, NodeKind, OracleStore, PruneResult, StoredAssignment, StoredNode, StoredProof, StoredProofRow } from './oracleStore.ts'

type NodeRow = {
  id: string
  kind: string
  model: string
  seq: number
  grpc_endpoint: string
  http_endpoint: string
  ram_mb: number
  vram_mb: number
  device: string
  benchmark_tok_per_sec: number
  ready: number
  peer_id: string | null
  multiaddrs: string
  created_at: number
  updated_at: number
}

const toNode = (r: NodeRow): StoredNode => ({
  id: r.id,
  kind: r.kind as NodeKind,
  model: r.model,
  seq: r.seq,
  grpcEndpoint: r.grpc_endpoint,
  httpEndpoint: r.http_endpoint,
  ramMb: r.ram_mb,
  vramMb: r.vram_mb,
  device: r.device,
  benchmarkTokPerSec: r.benchmark_tok_per_sec,
  ready: r.ready === 1,
  peerId: r.peer_id,
  multiaddrs: JSON.parse(r.multiaddrs) as string[],
  createdAt: r.created_at,
  updatedAt: r.updated_at,
})

const TOTALS_ROW =
  'agent, epoch, tokens, requests, latency_ms_sum AS latencyMsSum, uptime_seconds AS uptimeSeconds, uptime_credited AS uptimeCredited, reports, updated_at AS updatedAt'

const PROOF_ROW =
  'id, agent, epoch, model_hash AS modelHash, input_hash AS inputHash, output_hash AS outputHash, token_count AS tokenCount, proof_hash AS proofHash, tx_hash AS txHash, verdict, created_at AS createdAt'

/** The Oracle's store in an embedded SQLite file through `node:sqlite` (see oracleDatabase.ts). */
export function createSqliteOracleStore(init: { path: string } | { db: DatabaseSync }): OracleStore {
  const db = 'db' in init ? init.db : openOracleDatabase(init.path)
  const q = {
    nodes: db.prepare('SELECT * FROM nodes ORDER BY seq'),
    upsertNode: db.prepare(
      `INSERT INTO nodes (id, kind, model, seq, grpc_endpoint, http_endpoint, ram_mb, vram_mb, device, benchmark_tok_per_sec, ready, peer_id, multiaddrs, created_at, updated_at)
       VALUES (:id, :kind, :model, :seq, :grpc, :http, :ram, :vram, :device, :bench, :ready, :peer, :addrs, :created, :updated)
       ON CONFLICT(id) DO UPDATE SET kind = excluded.kind, model = excluded.model, seq = excluded.seq, grpc_endpoint = excluded.grpc_endpoint,
         http_endpoint = excluded.http_endpoint, ram_mb = excluded.ram_mb, vram_mb = excluded.vram_mb, device = excluded.device,
         benchmark_tok_per_sec = excluded.benchmark_tok_per_sec, ready = excluded.ready, peer_id = excluded.peer_id,
         multiaddrs = excluded.multiaddrs, created_at = excluded.created_at, updated_at = excluded.updated_at`,
    ),
    deleteNode: db.prepare('DELETE FROM nodes WHERE id = ?'),
    deleteAssignment: db.prepare('DELETE FROM assignments WHERE node_id = ?'),
    assignments: db.prepare('SELECT node_id, model, layer_start, layer_end, updated_at FROM assignments'),
    clearAssignments: db.prepare('DELETE FROM assignments WHERE model = ?'),
    insertAssignment: db.prepare('INSERT OR REPLACE INTO assignments (node_id, model, layer_start, layer_end, updated_at) VALUES (?, ?, ?, ?, ?)'),
    acceptTimestamp: db.prepare(
      `INSERT INTO replay_guard (address, scope, last_timestamp) VALUES (?, ?, ?)
       ON CONFLICT(address, scope) DO UPDATE SET last_timestamp = excluded.last_timestamp WHERE excluded.last_timestamp > replay_guard.last_timestamp`,
    ),
    lastTimestamp: db.prepare('SELECT last_timestamp FROM replay_guard WHERE address = ? AND scope = ?'),
    counters: db.prepare('SELECT agent, tokens, requests, uptime_seconds AS uptimeSeconds, epoch, reported_at AS reportedAt FROM agent_counters WHERE agent = ?'),
    upsertCounters: db.prepare(
      `INSERT INTO agent_counters (agent, tokens, requests, uptime_seconds, epoch, reported_at) VALUES (?, ?, ?, ?, ?, ?)
       ON CONFLICT(agent) DO UPDATE SET tokens = excluded.tokens, requests = excluded.requests, uptime_seconds = excluded.uptime_seconds,
         epoch = excluded.epoch, reported_at = excluded.reported_at`,
    ),
    addTotals: db.prepare(
      `INSERT INTO metrics_totals (agent, epoch, tokens, requests, latency_ms_sum, uptime_seconds, uptime_credited, reports, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, 1, ?)
       ON CONFLICT(agent, epoch) DO UPDATE SET tokens = tokens + excluded.tokens, requests = requests + excluded.requests,
         latency_ms_sum = latency_ms_sum + excluded.latency_ms_sum, uptime_seconds = excluded.uptime_seconds,
         uptime_credited = COALESCE(uptime_credited, 0) + excluded.uptime_credited, reports = reports + 1, updated_at = excluded.updated_at`,
    ),
    totalsOne: db.prepare(`SELECT ${TOTALS_ROW} FROM metrics_totals WHERE agent = ? AND epoch = ?`),
    totalsAll: db.prepare(`SELECT ${TOTALS_ROW} FROM metrics_totals WHERE agent = ? ORDER BY epoch DESC`),
    insertProof: db.prepare(
      'INSERT INTO proofs (agent, epoch, model_hash, input_hash, output_hash, token_count, proof_hash, tx_hash, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)',
    ),
    totalsOfEpoch: db.prepare(`SELECT ${TOTALS_ROW} FROM metrics_totals WHERE epoch = ? ORDER BY agent`),
    proofsOfEpoch: db.prepare(`SELECT ${PROOF_ROW} FROM proofs WHERE epoch = ? ORDER BY id`),
    proofsByHash: db.prepare(`SELECT ${PROOF_ROW} FROM proofs WHERE proof_hash = ? ORDER BY id`),
    setVerdict: db.prepare('UPDATE proofs SET verdict = ? WHERE id = ?'),
    proofs: db.prepare(
      `SELECT agent, epoch, model_hash AS modelHash, input_hash AS inputHash, output_hash AS outputHash, token_count AS tokenCount, proof_hash AS proofHash, created_at AS createdAt
       FROM proofs WHERE agent = ? ORDER BY id DESC LIMIT ?`,
    ),
    budgets: db.prepare('SELECT node_id AS nodeId, serving_seconds AS servingSeconds, tokens, updated_at AS updatedAt FROM node_budgets'),
    saveBudget: db.prepare(
      `INSERT INTO node_budgets (node_id, serving_seconds, tokens, updated_at) VALUES (?, ?, ?, ?)
       ON CONFLICT(node_id) DO UPDATE SET serving_seconds = excluded.serving_seconds, tokens = excluded.tokens, updated_at = excluded.updated_at`,
    ),
    pruneProofs: db.prepare('DELETE FROM proofs WHERE created_at < ? AND epoch < ?'),
    pruneTotals: db.prepare('DELETE FROM metrics_totals WHERE updated_at < ? AND epoch < ?'),
    // an agent's counters go only with its totals: a later report would otherwise be taken whole into an epoch still kept
    pruneCounters: db.prepare('DELETE FROM agent_counters WHERE reported_at < ? AND NOT EXISTS (SELECT 1 FROM metrics_totals t WHERE t.agent = agent_counters.agent)'),
    pruneReplay: db.prepare('DELETE FROM replay_guard WHERE last_timestamp < ?'),
    pruneBudgets: db.prepare('DELETE FROM node_budgets WHERE updated_at < ? AND node_id NOT IN (SELECT id FROM nodes)'),
    getValue: db.prepare('SELECT value FROM kv WHERE key = ?'),
    setValue: db.prepare('INSERT INTO kv (key, value, updated_at) VALUES (?, ?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at'),
    deleteValue: db.prepare('DELETE FROM kv WHERE key = ?'),
  }
  // Prepared statements return null-prototype rows: spread into plain objects for callers.
  const plain = <T>(row: unknown) => ({ ...(row as object) }) as T

  return {
    async loadNodes() {
      return (q.nodes.all() as NodeRow[]).map(toNode)
    },
    async upsertNode(n) {
      q.upsertNode.run({
        id: n.id,
        kind: n.kind,
        model: n.model,
        seq: n.seq,
        grpc: n.grpcEndpoint,
        http: n.httpEndpoint,
        ram: n.ramMb,
        vram: n.vramMb,
        device: n.device,
        bench: n.benchmarkTokPerSec,
        ready: n.ready ? 1 : 0,
        peer: n.peerId,
        addrs: JSON.stringify(n.multiaddrs),
        created: n.createdAt,
        updated: n.updatedAt,
      })
    },
    async deleteNode(id) {
      transaction(db, () => {
        q.deleteAssignment.run(id)
        q.deleteNode.run(id)
      })
    },
    async loadAssignments() {
      return (q.assignments.all() as Array<{ node_id: string; model: string; layer_start: number; layer_end: number; updated_at: number }>).map(
        (r): StoredAssignment => ({ nodeId: r.node_id, model: r.model, range: { start: r.layer_start, end: r.layer_end }, updatedAt: r.updated_at }),
      )
    },
    async replaceAssignments(model: string, ranges: ReadonlyMap<string, LayerRange>, at: number) {
      transaction(db, () => {
        q.clearAssignments.run(model)
        for (const [id, r] of ranges) q.insertAssignment.run(id, model, r.start, r.end, at)
      })
    },
    async acceptTimestamp(address, scope, timestamp) {
      return Number(q.acceptTimestamp.run(address, scope, timestamp).changes) === 1
    },
    async lastTimestamp(address, scope) {
      return (q.lastTimestamp.get(address, scope) as { last_timestamp: number } | undefined)?.last_timestamp
    },
    async agentCounters(agent) {
      const row = q.counters.get(agent)
      return row ? plain<AgentCounters>(row) : undefined
    },
    async recordMetrics(e: MetricsEntry) {
      const c = e.counters
      transaction(db, () => {
        q.upsertCounters.run(c.agent, c.tokens, c.requests, c.uptimeSeconds, c.epoch, c.reportedAt)
        q.addTotals.run(c.agent, c.epoch, e.delta.tokens, e.delta.requests, e.delta.latencyMsSum, e.uptimeSeconds, e.delta.uptimeSeconds, c.reportedAt)
        for (const p of e.proofs) q.insertProof.run(p.agent, p.epoch, p.modelHash, p.inputHash, p.outputHash, p.tokenCount, p.proofHash, p.txHash ?? null, p.createdAt)
        if (e.budget) q.saveBudget.run(e.budget.nodeId, e.budget.servingSeconds, e.budget.tokens, e.budget.updatedAt)
      })
    },
    async metricsTotals(agent, epoch) {
      const rows = epoch === undefined ? q.totalsAll.all(agent) : q.totalsOne.all(agent, epoch)
      return rows.map((r) => plain<MetricsTotals>(r))
    },
    async proofs(agent, limit) {
      return q.proofs.all(agent, limit).map((r) => plain<StoredProof>(r))
    },
    async epochTotals(epoch) {
      return q.totalsOfEpoch.all(epoch).map((r) => plain<MetricsTotals>(r))
    },
    async epochProofs(epoch) {
      return q.proofsOfEpoch.all(epoch).map((r) => plain<StoredProofRow>(r))
    },
    async proofsByHash(proofHash) {
      return q.proofsByHash.all(proofHash).map((r) => plain<StoredProofRow>(r))
    },
    async setProofVerdict(id, verdict) {
      q.setVerdict.run(verdict, id)
    },
    async loadBudgets() {
      return q.budgets.all().map((r) => plain<NodeBudget>(r))
    },
    async saveBudgets(budgets) {
      transaction(db, () => {
        for (const b of budgets) q.saveBudget.run(b.nodeId, b.servingSeconds, b.tokens, b.updatedAt)
      })
    },
    async prune(p): Promise<PruneResult> {
      return transaction(db, () => ({
        proofs: Number(q.pruneProofs.run(p.before, p.epochBelow).changes),
        metricsTotals: Number(q.pruneTotals.run(p.before, p.epochBelow).changes),
        agentCounters: Number(q.pruneCounters.run(p.before).changes),
        replayGuard: Number(q.pruneReplay.run(p.replayBeforeS).changes),
        nodeBudgets: Number(q.pruneBudgets.run(p.before).changes),
      }))
    },
    async getValue(key) {
      return (q.getValue.get(key) as { value: string } | undefined)?.value
    },
    async setValue(key, value) {
      q.setValue.run(key, value, Date.now())
    },
    async deleteValue(key) {
      q.deleteValue.run(key)
    },
    async close() {
      if (db.isOpen) db.close()
    },
  }
}
