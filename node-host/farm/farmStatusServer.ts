import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import type { WorkerSnapshot } from './superviseWorker.ts'

export type FarmStatus = { workers: WorkerSnapshot[]; tokensForwarded: number; tokensPerSecond: number; restarts: number }

export function summarize(workers: WorkerSnapshot[]): FarmStatus {
  return {
    workers,
    tokensForwarded: workers.reduce((s, w) => s + w.tokensForwarded, 0),
    tokensPerSecond: workers.reduce((s, w) => s + w.tokensPerSecond, 0),
    restarts: workers.reduce((s, w) => s + w.restarts, 0),
  }
}

/** `GET /status`: every worker's snapshot as JSON, for monitoring a farm that runs unattended. */
export async function startFarmStatusServer(init: { port: number; host?: string; status: () => FarmStatus }): Promise<{ url: string; server: Server; close(): Promise<void> }> {
  const server = createServer((req, res) => {
    if (req.method === 'GET' && req.url?.split('?')[0] === '/status') return void res.writeHead(200, { 'Content-Type': 'application/json' }).end(JSON.stringify(init.status()))
    res.writeHead(404).end()
  })
  await new Promise<void>((resolve, reject) => server.once('error', reject).listen(init.port, init.host ?? '127.0.0.1', resolve))
  const { port } = server.address() as AddressInfo
  return { url: `http://${init.host ?? '127.0.0.1'}:${port}/status`, server, close: () => new Promise((r) => server.close(() => r())) }
}
