import type { FarmStatus } from './farmStatusServer.ts'

const mb = (b?: number) => (b === undefined ? '-' : `${Math.round(b / 2 ** 20)}`)

/** The live terminal table: one row a worker (state, range, tokens forwarded, tokens/s, restarts, memory). */
export function renderFarmTable(status: FarmStatus, now = Date.now()): string {
  const head = ['worker', 'state', 'peer', 'range', 'tokens', 'tok/s', 'restarts', 'page MB', 'browser MB']
  const rows = status.workers.map((w) => [
    String(w.worker),
    w.state === 'backoff' ? `backoff ${Math.max(0, Math.ceil(((w.nextLaunchAt ?? now) - now) / 1000))}s${w.crashLoop ? ' CRASH-LOOP' : ''}` : w.state === 'running' ? (w.phase ?? 'loading app') : w.state,
    w.peerId ? `…${w.peerId.slice(-8)}` : '-',
    w.range ? `[${w.range.start}, ${w.range.end})` : '-',
    String(w.tokensForwarded),
    w.tokensPerSecond.toFixed(1),
    String(w.restarts),
    mb(w.pageRssBytes),
    mb(w.browserRssBytes),
  ])
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)))
  const line = (r: string[]) => r.map((c, i) => c.padEnd(widths[i]!)).join('  ').trimEnd()
  const failures = status.workers.filter((w) => w.lastFailure).map((w) => `worker ${w.worker}: last failure: ${w.lastFailure}`)
  return [line(head), ...rows.map(line), '', `total: ${status.tokensForwarded} tokens forwarded, ${status.tokensPerSecond.toFixed(1)} tokens/s, ${status.restarts} restarts`, ...failures].join('\n')
}
