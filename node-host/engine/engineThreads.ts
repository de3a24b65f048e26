import { availableParallelism } from 'node:os'

/** The environment variable that carries `--threads` to the engine and to every process a command starts. */
export const THREADS_ENV = 'SHARDMESH_THREADS'

export class ThreadsError extends RangeError {
  constructor(what: string, value: string) {
    super(`${what} must be a positive integer, got "${value}"`)
    this.name = 'ThreadsError'
  }
}

export function parseThreads(value: string, what = 'threads'): number {
  const n = Number(value)
  if (!/^\s*\d+\s*$/.test(value) || !Number.isSafeInteger(n) || n < 1) throw new ThreadsError(what, value)
  return n
}

/**
 * ONNX Runtime intra-op threads for engine sessions: SHARDMESH_THREADS when set, else every core
 * the process may use (ORT's own default is one per physical core, which leaves the other
 * hardware thread of each core idle: half the speed on a 2-vCPU machine).
 */
export function engineThreads(env: Record<string, string | undefined> = process.env): number {
  const v = env[THREADS_ENV]
  return v === undefined || v === '' ? availableParallelism() : parseThreads(v, THREADS_ENV)
}
