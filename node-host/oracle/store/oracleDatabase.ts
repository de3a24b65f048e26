import { mkdirSync } from 'node:fs'
import { dirname } from 'node:path'
import { DatabaseSync } from 'node:sqlite'

/**
 * Schema migrations in order; `schema_version` records how many ran. Append, never edit: a
 * database written by an older build migrates forward on open.
 */
export const MIGRATIONS: readonly string[] = [
  `CREATE TABLE nodes (
     id TEXT PRIMARY KEY,
     kind TEXT NOT NULL,
     model TEXT NOT NULL,
     seq INTEGER NOT NULL UNIQUE,
     grpc_endpoint TEXT NOT NULL,
     http_endpoint TEXT NOT NULL,
     ram_mb INTEGER NOT NULL,
     vram_mb INTEGER NOT NULL,
     device TEXT NOT NULL,
     benchmark_tok_per_sec REAL NOT NULL,
     ready INTEGER NOT NULL,
     peer_id TEXT,
     multiaddrs TEXT NOT NULL,
     created_at INTEGER NOT NULL,
     updated_at INTEGER NOT NULL
   );
   CREATE TABLE assignments (
     node_id TEXT PRIMARY KEY REFERENCES nodes(id) ON DELETE CASCADE,
     model TEXT NOT NULL,
     layer_start INTEGER NOT NULL,
     layer_end INTEGER NOT NULL,
     updated_at INTEGER NOT NULL
   );
   CREATE INDEX assignments_model ON assignments(model);
   CREATE TABLE replay_guard (
     address TEXT NOT NULL,
     scope TEXT NOT NULL,
     last_timestamp INTEGER NOT NULL,
     PRIMARY KEY (address, scope)
   );
   CREATE TABLE agent_counters (
     agent TEXT PRIMARY KEY,
     tokens INTEGER NOT NULL,
     requests INTEGER NOT NULL,
     epoch INTEGER NOT NULL,
     reported_at INTEGER NOT NULL
   );
   CREATE TABLE metrics_totals (
     agent TEXT NOT NULL,
     epoch INTEGER NOT NULL,
     tokens INTEGER NOT NULL,
     requests INTEGER NOT NULL,
     latency_ms_sum REAL NOT NULL,
     uptime_seconds REAL NOT NULL,
     reports INTEGER NOT NULL,
     updated_at INTEGER NOT NULL,
     PRIMARY KEY (agent, epoch)
   );
   CREATE TABLE proofs (
     id INTEGER PRIMARY KEY AUTOINCREMENT,
     agent TEXT NOT NULL,
     epoch INTEGER NOT NULL,
     model_hash TEXT NOT NULL,
     input_hash TEXT NOT NULL,
     output_hash TEXT NOT NULL,
     token_count INTEGER NOT NULL,
     proof_hash TEXT NOT NULL,
     created_at INTEGER NOT NULL
   );
   CREATE INDEX proofs_agent ON proofs(agent, epoch);
   CREATE TABLE kv (
     key TEXT PRIMARY KEY,
     value TEXT NOT NULL,
     updated_at INTEGER NOT NULL
   );`,
  // the reward reporter: the transaction that submitted each proof, the chain's verdict, per-epoch reads
  `ALTER TABLE proofs ADD COLUMN tx_hash TEXT;
   ALTER TABLE proofs ADD COLUMN verdict TEXT;
   CREATE INDEX proofs_epoch ON proofs(epoch);
   CREATE INDEX proofs_hash ON proofs(proof_hash);
   CREATE INDEX metrics_totals_epoch ON metrics_totals(epoch);`,
  // bounded booking: the uptime an agent last reported (its rise is what a report claims), the uptime
  // credited per epoch after the bounds (NULL: booked before bounding existed), what each node's
  // observed serving time still allows, and the indexes pruning walks
  `ALTER TABLE agent_counters ADD COLUMN uptime_seconds REAL;
   ALTER TABLE metrics_totals ADD COLUMN uptime_credited REAL;
   CREATE TABLE node_budgets (
     node_id TEXT PRIMARY KEY,
     serving_seconds REAL NOT NULL,
     tokens REAL NOT NULL,
     updated_at INTEGER NOT NULL
   );
   CREATE INDEX proofs_created ON proofs(created_at);
   CREATE INDEX metrics_totals_updated ON metrics_totals(updated_at);
   CREATE INDEX agent_counters_reported ON agent_counters(reported_at);
   CREATE INDEX replay_guard_timestamp ON replay_guard(last_timestamp);`,
]

export class OracleDatabaseError extends Error {
  constructor(message: string) {
    super(message)
    this.name = 'OracleDatabaseError'
  }
}

/** Runs `fn` in a transaction (BEGIN IMMEDIATE: other processes wait rather than fail midway). */
export function transaction<T>(db: DatabaseSync, fn: () => T): T {
  db.exec('BEGIN IMMEDIATE')
  try {
    const out = fn()
    db.exec('COMMIT')
    return out
  } catch (e) {
    db.exec('ROLLBACK')
    throw e
  }
}

/**
 * Opens (creating if needed) the Oracle's SQLite database: WAL journal, foreign keys on,
 * a busy timeout for a second process, and every pending migration applied.
 * `path` ':memory:' gives a throwaway database (tests).
 */
export function openOracleDatabase(path: string): DatabaseSync {
  if (path !== ':memory:') mkdirSync(dirname(path), { recursive: true })
  const db = new DatabaseSync(path)
  try {
    db.exec('PRAGMA busy_timeout = 5000')
    if (path !== ':memory:') {
      const mode = db.prepare('PRAGMA journal_mode = WAL').get() as { journal_mode: string }
      if (mode.journal_mode !== 'wal') throw new OracleDatabaseError(`${path}: could not switch to WAL (journal_mode ${mode.journal_mode})`)
    }
    db.exec('PRAGMA synchronous = NORMAL')
    db.exec('PRAGMA foreign_keys = ON')
    migrate(db, path)
    return db
  } catch (e) {
    db.close()
    throw e
  }
}

function migrate(db: DatabaseSync, path: string): void {
  db.exec('CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)')
  transaction(db, () => {
    let row = db.prepare('SELECT version FROM schema_version').get() as { version: number } | undefined
    if (!row) {
      db.prepare('INSERT INTO schema_version (version) VALUES (0)').run()
      row = { version: 0 }
    }
    if (row.version > MIGRATIONS.length) {
      throw new OracleDatabaseError(`${path}: schema version ${row.version} is newer than this build knows (${MIGRATIONS.length}); upgrade shardmesh`)
    }
    for (let v = row.version; v < MIGRATIONS.length; v++) db.exec(MIGRATIONS[v]!)
    db.prepare('UPDATE schema_version SET version = ?').run(MIGRATIONS.length)
  })
}

/** The schema version of an open database. */
export function schemaVersion(db: DatabaseSync): number {
  return (db.prepare('SELECT version FROM schema_version').get() as { version: number }).version
}
