import { useEffect, useState } from 'react'
import type { Topology } from '../../../shared/oracle/plumiseSchemas.ts'
import { isPageNode, layerCopies, type NetworkSnapshot } from '../../network/subscribeNetwork.ts'
import { formatDuration, shortId } from '../format.ts'

/** Layers across, copies down: one cell per (layer, copy), filled when a ready node holds it. */
function Coverage({ t }: { t: Topology }) {
  const copies = layerCopies(t)
  const rows = Math.max(2, ...copies)
  return (
    <div className="coverage" role="img" aria-label={`layer coverage: ${copies.map((c, l) => `layer ${l}: ${c}`).join(', ')}`} style={{ gridTemplateColumns: `repeat(${t.totalLayers}, 1fr)` }}>
      {Array.from({ length: rows }, (_, r) =>
        copies.map((c, l) => <span key={`${r}-${l}`} className={r < c ? 'cell on' : r === 0 ? 'cell gap' : 'cell'} title={`layer ${l}: ${c} cop${c === 1 ? 'y' : 'ies'}`} />),
      )}
      {copies.map((_, l) => (
        <span key={`label-${l}`} className="layer-label">
          {l}
        </span>
      ))}
    </div>
  )
}

export function NetworkView({ net }: { net: NetworkSnapshot }) {
  const [now, setNow] = useState(Date.now())
  useEffect(() => {
    const t = setInterval(() => setNow(Date.now()), 1000)
    return () => clearInterval(t)
  }, [])
  const models = Object.values(net.topologies)
  return (
    <section aria-labelledby="network-title" className="view">
      <h2 id="network-title">The network</h2>
      <p className="lede">
        Live from the Oracle's event stream.{' '}
        <span className={net.connected ? 'ok' : 'warn'}>{net.connected ? 'Connected.' : 'Connecting…'}</span>
      </p>
      {net.served && (
        <p>
          The network served <strong data-testid="network-served-total">{net.served.totalTokensPerSecond.toFixed(1)} tokens/s</strong> over the last {net.served.windowSeconds} s ({net.served.totalTokens} tokens
          counted since the Oracle started).
        </p>
      )}
      {net.error && (
        <p role="alert" className="error">
          {net.error}
        </p>
      )}
      {models.map((t) => {
        const ready = t.nodes.filter((n) => n.ready)
        const served = new Map((net.served?.nodes ?? []).filter((s) => s.model === t.model).map((s) => [s.id, s]))
        const servedTotal = [...served.values()].reduce((sum, s) => sum + s.tokensPerSecond, 0)
        const covered = layerCopies(t).every((c) => c > 0)
        return (
          <div className="card" key={t.model} data-testid={`model-${t.model}`}>
            <h3>{t.model}</h3>
            <p>
              {t.nodes.length} node{t.nodes.length === 1 ? '' : 's'}, {ready.length} ready · {t.totalLayers} layers · {covered ? 'every layer served' : <span className="warn">some layers have no ready node</span>} ·
              served <strong data-testid="network-tps">{net.served ? `${servedTotal.toFixed(1)} tokens/s` : 'not counted by this Oracle'}</strong>
              {net.served && <> over the last {net.served.windowSeconds} s</>}
            </p>
            <Coverage t={t} />
            <div className="table-wrap">
              <table className="nodes">
                <thead>
                  <tr>
                    <th>Kind</th>
                    <th>Peer id</th>
                    <th>Served</th>
                    <th>Layers</th>
                    <th>Ready</th>
                    <th>Tokens</th>
                    <th>Score</th>
                    <th>Last seen</th>
                  </tr>
                </thead>
                <tbody>
                  {t.nodes.map((n) => (
                    <tr key={n.nodeAddress} data-peer-id={n.peerId ?? ''}>
                      <td data-label="Kind">{isPageNode(n) ? 'page' : 'host'}</td>
                      <td data-label="Peer id" title={n.peerId ?? n.nodeAddress}>
                        <span className="mono">{shortId(n.peerId ?? n.nodeAddress)}</span>
                      </td>
                      <td data-label="Served" data-testid="served-tps" title={served.get(n.nodeAddress)?.wallet ? `credited to ${served.get(n.nodeAddress)!.wallet}` : undefined}>
                        {served.has(n.nodeAddress) ? `${served.get(n.nodeAddress)!.tokensPerSecond.toFixed(1)} tokens/s` : '—'}
                      </td>
                      <td data-label="Layers">
                        [{n.layerStart}, {n.layerEnd})
                      </td>
                      <td data-label="Ready">{n.ready ? 'yes' : 'no'}</td>
                      <td data-label="Tokens" data-testid="served-tokens">{served.get(n.nodeAddress)?.tokens ?? 0}</td>
                      <td data-label="Score" title="benchmark tokens/s (capacity, not served)">{n.benchmarkTokPerSec.toFixed(1)}</td>
                      <td data-label="Last seen">{formatDuration(Math.max(0, now - Date.parse(n.updatedAt)))} ago</td>
                    </tr>
                  ))}
                </tbody>
              </table>
            </div>
          </div>
        )
      })}
      {!models.length && net.connected && <p>The Oracle serves no model yet.</p>}
    </section>
  )
}
