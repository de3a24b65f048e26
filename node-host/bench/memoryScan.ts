import { Worker } from 'node:worker_threads'
import ort from 'onnxruntime-node'
import { OnnxGraph } from '../../shared/model/onnxGraph.ts'

export type MemoryScanParameters = {
  /** Bytes scanned per pass; far larger than the last-level cache. @default 1 GiB */
  bytes?: number
  /** Threads reading at once. @default 2 */
  threads?: number
  /** Timed passes (after one warm-up); the fastest counts. @default 5 */
  passes?: number
}

export type MemoryScanResult = {
  method: string
  bytes: number
  threads: number
  /** Fastest pass. */
  ms: number
  /** 10^9 bytes per second, fastest pass. */
  gbPerS: number
  passesMs: number[]
}

/** Row length of the scanned matrix: 1 MiB of float32 per row, so rows split evenly over threads. */
const ROW = 1 << 18

/** `ReduceMax` over the last axis of `[rows, ROW]` float32: one output per row. */
function reduceMaxModel(): Uint8Array {
  const g = new OnnxGraph('memory_scan')
  const x = g.input('x', 'float32', ['R', ROW])
  g.output(g.op1('ReduceMax', [x, g.constant('int64', [1], [1])], { keepdims: 0 }), 'y', 'float32', ['R'])
  return g.build().model
}

async function timePasses(passes: number, pass: () => Promise<unknown>): Promise<number[]> {
  await pass()
  const out: number[] = []
  for (let i = 0; i < passes; i++) {
    const t0 = performance.now()
    await pass()
    out.push(performance.now() - t0)
  }
  return out
}

function result(method: string, bytes: number, threads: number, passesMs: number[]): MemoryScanResult {
  const ms = Math.min(...passesMs)
  return { method, bytes, threads, ms, gbPerS: bytes / ms / 1e6, passesMs }
}

/**
 * Read-only memory bandwidth the way the engine reads weights: ONNX Runtime's cpu `ReduceMax`
 * (vectorized native code; rows split over the intra-op thread pool) over a float32 input that
 * ORT reads in place from the JS buffer. `ReduceMax`, not `ReduceSum`: ORT 1.30 runs this
 * `ReduceSum` on one thread whatever `intraOpNumThreads` says.
 */
export async function ortMemoryScan(params: MemoryScanParameters = {}): Promise<MemoryScanResult> {
  const threads = params.threads ?? 2
  const rows = Math.max(1, Math.floor((params.bytes ?? 1 << 30) / 4 / ROW))
  const data = new Float32Array(rows * ROW).fill(1) // every page touched: no zero-page reads
  const session = await ort.InferenceSession.create(reduceMaxModel(), { executionProviders: ['cpu'], intraOpNumThreads: threads, logSeverityLevel: 3 })
  try {
    const x = new ort.Tensor('float32', data, [rows, ROW])
    const y = (await session.run({ x })).y!.data as Float32Array
    if (y.length !== rows || y[0] !== 1) throw new Error(`memory scan: ReduceMax gave ${y[0]} for ${y.length} rows`)
    const passesMs = await timePasses(params.passes ?? 5, () => session.run({ x }))
    return result(`onnxruntime cpu ReduceMax over [${rows}, ${ROW}] float32, intraOpNumThreads ${threads}`, data.byteLength, threads, passesMs)
  } finally {
    await session.release()
  }
}

// A worker that looks for a byte absent from its slice: Buffer#indexOf is glibc's memchr (SIMD).
const MEMCHR_WORKER = `
const { parentPort, workerData } = require('node:worker_threads')
const slice = Buffer.from(workerData.buffer, workerData.start, workerData.length)
parentPort.on('message', () => parentPort.postMessage(slice.indexOf(7)))
`

/**
 * The same scan without ORT, as a cross-check: `threads` worker threads each run glibc's memchr
 * over their share of one SharedArrayBuffer.
 */
export async function memchrMemoryScan(params: MemoryScanParameters = {}): Promise<MemoryScanResult> {
  const threads = params.threads ?? 2
  const share = Math.floor((params.bytes ?? 1 << 30) / threads / 4096) * 4096
  const buffer = new SharedArrayBuffer(share * threads)
  new Uint8Array(buffer).fill(1)
  const workers = Array.from({ length: threads }, (_, k) => new Worker(MEMCHR_WORKER, { eval: true, workerData: { buffer, start: k * share, length: share } }))
  try {
    const ask = (w: Worker) => new Promise<number>((resolve, reject) => {
      w.once('message', resolve)
      w.once('error', reject)
      w.postMessage('scan')
    })
    const passesMs = await timePasses(params.passes ?? 5, async () => {
      const found = await Promise.all(workers.map(ask))
      if (found.some((i) => i !== -1)) throw new Error('memory scan: memchr found a byte that was never written')
    })
    return result(`memchr (Buffer#indexOf) in ${threads} worker threads over one SharedArrayBuffer`, share * threads, threads, passesMs)
  } finally {
    await Promise.all(workers.map((w) => w.terminate()))
  }
}
