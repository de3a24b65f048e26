import { formatBytes } from '../format.ts'

export function ProgressBar({ label, done, total }: { label: string; done: number; total: number }) {
  const pct = total > 0 ? Math.min(100, (done / total) * 100) : 0
  return (
    <div className="progress">
      <div className="progress-label">
        <span>{label}</span>
        <span>
          {formatBytes(done)} of {formatBytes(total)}
        </span>
      </div>
      <progress max={total || 1} value={done} aria-label={label}>
        {pct.toFixed(0)}%
      </progress>
    </div>
  )
}
