import { useEffect, useState } from 'react'
import type { UseContributor } from '../hooks/useContributor.ts'
import { ProgressBar } from '../components/ProgressBar.tsx'
import { RateChart } from '../components/RateChart.tsx'
import { formatBytes, formatDuration, shortId } from '../format.ts'
import type { Capabilities } from '../../contributor/readCapabilities.ts'

const PHASE_WORDS: Record<string, string> = {
  idle: 'Not contributing.',
  starting: 'Joining the network: connecting to a relay…',
  measuring: 'Measuring this tab: running the reference model once…',
  connecting: 'Registering with the Oracle…',
  waiting: 'Registered. Waiting for the Oracle to assign layers…',
  loading: 'Downloading and loading the assigned layers…',
  serving: 'Serving.',
  stopping: 'Leaving the network…',
  error: 'Stopped by an error.',
}

function CapabilityList({ caps }: { caps: Capabilities }) {
  const a = caps.adapter
  return (
    <dl className="facts">
      <dt>WebGPU</dt>
      <dd data-testid="webgpu">
        {a ? (
          <>
            {a.vendor || 'unknown vendor'} {a.architecture && `· ${a.architecture}`} {a.description && `· ${a.description}`}
          </>
        ) : caps.webgpuMissing === 'no-navigator-gpu' ? (
          'Not available: this browser has no WebGPU.'
        ) : (
          'Not available: the browser offers no WebGPU adapter (blocked or no GPU).'
        )}
      </dd>
      {a && (
        <>
          <dt>shader-f16</dt>
          <dd>{a.shaderF16 ? 'yes (half-precision shaders)' : 'no (float32 shaders)'}</dd>
          <dt>Largest GPU buffer</dt>
          <dd>{formatBytes(a.maxBufferSize)}</dd>
        </>
      )}
      <dt>Device memory</dt>
      <dd>{caps.deviceMemoryGb !== null ? `${caps.deviceMemoryGb} GB (as the browser reports it)` : 'not reported by this browser'}</dd>
      <dt>CPU threads</dt>
      <dd>{caps.threads}</dd>
      <dt>Runs shards on</dt>
      <dd data-testid="backend">
        {caps.backend === 'webgpu' ? 'WebGPU (the GPU)' : 'WebAssembly on the CPU: without WebGPU this tab falls back to the wasm backend, slower but correct.'}
      </dd>
    </dl>
  )
}

export function ContributeView({ c, model }: { c: UseContributor; model: string | undefined }) {
  const s = c.state
  const active = s.phase !== 'idle' && s.phase !== 'error'
  const [now, setNow] = useState(Date.now())
  useEffect(() => {
    if (!s.servingSince) return
    const t = setInterval(() => setNow(Date.now()), 1000)
    return () => clearInterval(t)
  }, [s.servingSince])
  const defaultMb = c.capabilities ? Math.floor(c.capabilities.defaultOfferBytes / (1024 * 1024)) : 2048
  const maxMb = Math.max(defaultMb * 2, 64)
  const mb = c.memoryMb ?? defaultMb

  return (
    <section aria-labelledby="contribute-title" className="view">
      <h2 id="contribute-title">Contribute this tab</h2>
      <p className="lede">
        Your browser runs a slice of the model's layers and passes hidden states to the next peer. Nothing is installed; closing the tab stops it.
      </p>

      <div className="card action">
        <label className="field">
          <span>Memory offered (MB)</span>
          <div className="field-row">
            <input type="range" min={16} max={maxMb} step={16} value={Math.min(mb, maxMb)} onChange={(e) => c.setMemoryMb(Number(e.target.value))} disabled={active} aria-label="Memory offered (MB), slider" />
            <input type="number" min={1} max={65536} value={mb} onChange={(e) => Number(e.target.value) > 0 && c.setMemoryMb(Number(e.target.value))} disabled={active} aria-label="Memory offered (MB)" />
          </div>
          <small>The Oracle assigns only layers that fit in this much memory.</small>
        </label>
        <div className="actions">
          {active ? (
            <button type="button" className="stop" onClick={c.stop} disabled={s.phase === 'stopping'}>
              Stop
            </button>
          ) : (
            <button type="button" className="primary" onClick={c.start} disabled={!c.capabilities || !model}>
              Contribute
            </button>
          )}
        </div>
        <p className="status" role="status" data-phase={s.phase}>
          {PHASE_WORDS[s.phase]}
          {s.phase === 'serving' && s.range && ` Layers [${s.range.start}, ${s.range.end}) of ${s.model}.`}
        </p>
        {s.error && (
          <p role="alert" className="error">
            {s.error}
          </p>
        )}
        {s.load && (s.phase === 'loading' || s.phase === 'serving') && (
          <ProgressBar label={`Layers [${s.load.range.start}, ${s.load.range.end})`} done={s.load.doneBytes} total={s.load.totalBytes} />
        )}
      </div>

      {(s.phase === 'serving' || s.phase === 'waiting' || s.phase === 'loading') && (
        <div className="card">
          <h3>Serving</h3>
          <dl className="facts stats" data-testid="serving">
            <dt>Model</dt>
            <dd>{s.model}</dd>
            <dt>Layers</dt>
            <dd data-testid="range">{s.range ? `[${s.range.start}, ${s.range.end})` : 'none yet'}</dd>
            <dt>Backend</dt>
            <dd>{s.device ?? '…'}{s.score !== undefined && ` · benchmark ${s.score} tokens/s`}</dd>
            <dt>Peer id</dt>
            <dd className="mono" title={s.peerId}>{s.peerId ? shortId(s.peerId) : '…'}</dd>
            <dt>Peers connected</dt>
            <dd data-testid="peers">{s.peers}</dd>
            <dt>Sessions</dt>
            <dd data-testid="sessions">{s.sessions}</dd>
            <dt>Tokens forwarded</dt>
            <dd data-testid="tokens">{s.tokensForwarded}</dd>
            <dt>ms per step</dt>
            <dd>{s.msPerStep !== null ? s.msPerStep.toFixed(1) : '–'}</dd>
            <dt>Uptime</dt>
            <dd>{s.servingSince ? formatDuration(now - s.servingSince) : '–'}</dd>
            <dt>Earnings booked</dt>
            <dd data-testid="earnings">
              {s.earningsRecords ? `$${s.earningsUsd.toFixed(6)} (${s.earningsRecords} record${s.earningsRecords > 1 ? 's' : ''})` : '$0 so far (the Oracle books earnings when a range is finished)'}
            </dd>
            {s.startToServingMs !== undefined && (
              <>
                <dt>Click to serving</dt>
                <dd data-testid="start-to-serving" title={Object.entries(s.phaseAtMs).map(([p, ms]) => `${p} at ${(ms / 1000).toFixed(1)} s`).join(', ')}>
                  {(s.startToServingMs / 1000).toFixed(1)} s
                </dd>
              </>
            )}
          </dl>
          <RateChart samples={s.rate} />
        </div>
      )}
      <div className="card">
        <h3>This tab</h3>
        {c.capabilitiesError && <p role="alert" className="error">{c.capabilitiesError}</p>}
        {c.capabilities ? <CapabilityList caps={c.capabilities} /> : <p>Checking WebGPU and memory…</p>}
      </div>

    </section>
  )
}
