import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import type { WorkerSnapshot } from './superviseWorker.ts'

/** A worker as `GET /status` shows it: its page's own figures, and what the Oracle counted it served. */
export type FarmWorkerStatus = WorkerSnapshot & {
  /** Served as the Oracle counts it (TASK_PROGRESS counters, bounded): what the network pays. */
  served?: { tokensPerSecond: number; tokens: number; wallet: string | null }
  /** The worker wallet's pending reward on chain, wei (decimal string). */
  pendingWei?: string
}

export type FarmStatus = {
  workers: FarmWorkerStatus[]
  tokensForwarded: number
  tokensPerSecond: number
  /** The Oracle's count for all the farm's pages. */
  servedTokensPerSecond: number
  /** Booked by the Oracle for the pages (EARNINGS_RECORD), USD. */
  earningsUsd: number
  restarts: number
  /** The farm wallet: where the workers' rewards are forwarded. */
  wallet?: { address: string; pendingWei: string; claimedWei: string }
}

export function summarize(workers: FarmWorkerStatus[], wallet?: FarmStatus['wallet']): FarmStatus {
  return {
    workers,
    tokensForwarded: workers.reduce((s, w) => s + w.tokensForwarded, 0),
    tokensPerSecond: workers.reduce((s, w) => s + w.tokensPerSecond, 0),
    servedTokensPerSecond: Math.round(workers.reduce((s, w) => s + (w.served?.tokensPerSecond ?? 0), 0) * 100) / 100,
    earningsUsd: workers.reduce((s, w) => s + (w.earningsUsd ?? 0), 0),
    restarts: workers.reduce((s, w) => s + w.restarts, 0),
    ...(wallet ? { wallet } : {}),
  }
}

/**
 * `GET /status`: every worker's snapshot as JSON; `GET /metrics`: the same in the Prometheus text
 * format (farmMetrics.ts), for monitoring a farm that runs unattended.
 */
export async function startFarmStatusServer(init: {
  port: number
  host?: string
  status: () => FarmStatus
  metrics?: () => Promise<{ contentType: string; body: string }>
}): Promise<{ url: string; metricsUrl: string; server: Server; close(): Promise<void> }> {
  const server = createServer((req, res) => {
    const path = req.url?.split('?')[0]
    if (req.method === 'GET' && path === '/status') return void res.writeHead(200, { 'Content-Type': 'application/json' }).end(JSON.stringify(init.status()))
    if (req.method === 'GET' && path === '/metrics' && init.metrics) {
      init.metrics().then(
        ({ contentType, body }) => res.writeHead(200, { 'Content-Type': contentType }).end(body),
        (e: Error) => res.writeHead(500).end(e.message),
      )
      return
    }
    res.writeHead(404).end()
  })
  await new Promise<void>((resolve, reject) => server.once('error', reject).listen(init.port, init.host ?? '127.0.0.1', resolve))
  const { port } = server.address() as AddressInfo
  const base = `http://${init.host ?? '127.0.0.1'}:${port}`
  return { url: `${base}/status`, metricsUrl: `${base}/metrics`, server, close: () => new Promise((r) => server.close(() => r())) }
}
