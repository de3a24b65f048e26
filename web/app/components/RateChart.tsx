import type { RateSample } from '../../contributor/createContributor.ts'

/** Tokens/s served over the last two minutes, as a line (SVG: no chart library in the bundle). */
export function RateChart({ samples }: { samples: RateSample[] }) {
  const w = 300
  const h = 80
  const max = Math.max(1, ...samples.map((s) => s.tokensPerSecond))
  const n = Math.max(2, samples.length)
  const points = samples.map((s, i) => `${((i / (n - 1)) * w).toFixed(1)},${(h - (s.tokensPerSecond / max) * (h - 4) - 2).toFixed(1)}`).join(' ')
  const latest = samples.at(-1)?.tokensPerSecond ?? 0
  return (
    <figure className="chart">
      <svg viewBox={`0 0 ${w} ${h}`} preserveAspectRatio="none" role="img" aria-label={`tokens per second served, now ${latest.toFixed(1)}`}>
        <line x1="0" y1={h - 1} x2={w} y2={h - 1} className="axis" />
        {samples.length > 1 && <polyline points={points} className="line" />}
      </svg>
      <figcaption>
        tokens/s served: <strong>{latest.toFixed(1)}</strong> now, peak {max.toFixed(1)}
      </figcaption>
    </figure>
  )
}
