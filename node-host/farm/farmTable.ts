import { formatEther } from 'viem'
import type { FarmStatus } from './farmStatusServer.ts'

const mb = (b?: number) => (b === undefined ? '-' : `${Math.round(b / 2 ** 20)}`)

/**
 * The live terminal table: one row a worker (state, range, tokens forwarded, tokens/s as the page
 * counts them, served tokens/s as the Oracle counts them, earnings, restarts, memory).
 */
export function renderFarmTable(status: FarmStatus, now = Date.now()): string {
  const head = ['worker', 'state', 'peer', 'range', 'tokens', 'tok/s', 'served tok/s', 'earned $', 'restarts', 'page MB', 'browser MB']
  const rows = status.workers.map((w) => [
    String(w.worker),
    w.state === 'backoff' ? `backoff ${Math.max(0, Math.ceil(((w.nextLaunchAt ?? now) - now) / 1000))}s${w.crashLoop ? ' CRASH-LOOP' : ''}` : w.state === 'running' ? (w.phase ?? 'loading app') : w.state,
    w.peerId ? `…${w.peerId.slice(-8)}` : '-',
    w.range ? `[${w.range.start}, ${w.range.end})` : '-',
    String(w.tokensForwarded),
    w.tokensPerSecond.toFixed(1),
    w.served ? w.served.tokensPerSecond.toFixed(1) : '-',
    (w.earningsUsd ?? 0).toFixed(4),
    String(w.restarts),
    mb(w.pageRssBytes),
    mb(w.browserRssBytes),
  ])
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)))
  const line = (r: string[]) => r.map((c, i) => c.padEnd(widths[i]!)).join('  ').trimEnd()
  const failures = status.workers.filter((w) => w.lastFailure).map((w) => `worker ${w.worker}: last failure: ${w.lastFailure}`)
  const wallet = status.wallet ? [`farm wallet ${status.wallet.address}: ${formatEther(BigInt(status.wallet.pendingWei))} pending, ${formatEther(BigInt(status.wallet.claimedWei))} claimed`] : []
  return [
    line(head),
    ...rows.map(line),
    '',
    `total: ${status.tokensForwarded} tokens forwarded, ${status.tokensPerSecond.toFixed(1)} tokens/s, served ${status.servedTokensPerSecond.toFixed(1)} tokens/s (Oracle), earned $${status.earningsUsd.toFixed(4)}, ${status.restarts} restarts`,
    ...wallet,
    ...failures,
  ].join('\n')
}
