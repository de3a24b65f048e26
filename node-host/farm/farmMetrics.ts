import { Counter, Gauge, Registry } from 'prom-client'
import type { FarmStatus } from './farmStatusServer.ts'

export type FarmMetrics = {
  readonly registry: Registry
  render(): Promise<{ contentType: string; body: string }>
}

/**
 * The farm's Prometheus metrics (`GET /metrics` beside `/status`), read from its status when
 * scraped: per worker its state, tokens forwarded and tokens/s as the page counts them, served
 * tokens/s as the Oracle counts them, restarts, memory, earnings; the farm wallet's rewards.
 */
export function createFarmMetrics(status: () => FarmStatus): FarmMetrics {
  const registry = new Registry()
  const registers = [registry]
  const label = (w: FarmStatus['workers'][number]) => ({ worker: String(w.worker) })
  const perWorker = (name: string, help: string, value: (w: FarmStatus['workers'][number]) => number | undefined) =>
    new Gauge({
      name,
      help,
      labelNames: ['worker'] as const,
      registers,
      collect() {
        this.reset()
        for (const w of status().workers) {
          const v = value(w)
          if (v !== undefined) this.set(label(w), v)
        }
      },
    })
  new Gauge({
    name: 'shardmesh_farm_worker_up',
    help: 'Whether the worker\'s page serves a range (1) or not (0: launching, loading, backing off, stopped), by worker.',
    labelNames: ['worker', 'state'] as const,
    registers,
    collect() {
      this.reset()
      for (const w of status().workers) this.set({ worker: String(w.worker), state: w.state === 'running' ? (w.phase ?? 'loading') : w.state }, w.state === 'running' && w.phase === 'serving' ? 1 : 0)
    },
  })
  perWorker('shardmesh_farm_worker_tokens_per_second', 'Tokens/s the worker\'s page says it forwards (its last second).', (w) => w.tokensPerSecond)
  perWorker('shardmesh_farm_worker_served_tokens_per_second', 'Tokens/s the Oracle counted the worker\'s page served over its window (what the network pays).', (w) => w.served?.tokensPerSecond)
  perWorker('shardmesh_farm_worker_page_rss_bytes', 'Memory of the worker\'s page (renderer PSS).', (w) => w.pageRssBytes)
  perWorker('shardmesh_farm_worker_browser_rss_bytes', 'Memory of the worker\'s Chromium besides the page (PSS).', (w) => w.browserRssBytes)
  perWorker('shardmesh_farm_worker_earnings_usd', 'Earnings the Oracle booked for the worker\'s page (EARNINGS_RECORD), USD, since the page loaded.', (w) => w.earningsUsd)
  perWorker('shardmesh_farm_worker_pending_reward_wei', 'The worker wallet\'s pending reward in the RewardPool, wei.', (w) => (w.pendingWei === undefined ? undefined : Number(w.pendingWei)))
  perWorker('shardmesh_farm_worker_tokens_forwarded', 'Tokens the worker\'s page forwarded since it loaded (a restart starts again from 0).', (w) => w.tokensForwarded)
  new Counter({
    name: 'shardmesh_farm_worker_restarts_total',
    help: 'Restarts of each worker since the farm started.',
    labelNames: ['worker'] as const,
    registers,
    collect() {
      this.reset()
      for (const w of status().workers) this.inc(label(w), w.restarts)
    },
  })
  new Gauge({
    name: 'shardmesh_farm_served_tokens_per_second',
    help: 'Tokens/s the Oracle counted the farm\'s pages served, together.',
    registers,
    collect() {
      this.set(status().servedTokensPerSecond)
    },
  })
  new Counter({
    name: 'shardmesh_farm_claimed_wei_total',
    help: 'Rewards the farm claimed for its workers and forwarded to the farm wallet, wei, since it started.',
    registers,
    collect() {
      this.reset()
      const w = status().wallet
      if (w) this.inc(Number(w.claimedWei))
    },
  })
  return {
    registry,
    async render() {
      return { contentType: registry.contentType, body: await registry.metrics() }
    },
  }
}
