import { execFile } from 'node:child_process'

/**
 * Live GPU readings from `nvidia-smi`, polled on a timer (never per token), with the energy drawn
 * integrated from power and the utilization averaged over time. A machine without the binary has
 * no readable GPUs: its readings are `null` (unknown), never zeros.
 */

/** The query the poller runs: the columns parseNvidiaSmiCsv reads, in this order. */
export const NVIDIA_SMI_QUERY = ['--query-gpu=index,utilization.gpu,memory.used,memory.total,temperature.gpu,power.draw,fan.speed', '--format=csv,noheader,nounits']

/** One GPU at one moment; a reading the driver does not give (`[N/A]`, `[Not Supported]`) is null. */
export type GpuReading = {
  index: number
  /** Percent, 0-100. */
  utilization: number | null
  memoryUsedMiB: number | null
  memoryTotalMiB: number | null
  temperatureC: number | null
  powerDrawW: number | null
  /** Percent; null on passively cooled GPUs (datacenter cards report `[N/A]`). */
  fanSpeedPercent: number | null
}

/** nvidia-smi's output was not what NVIDIA_SMI_QUERY produces. */
export class NvidiaSmiFormatError extends Error {
  constructor(message: string) {
    super(message)
    this.name = 'NvidiaSmiFormatError'
  }
}

const reading = (cell: string): number | null => {
  const s = cell.trim()
  // `[N/A]`, `[Not Supported]`, `[Unknown Error]`, `N/A`: the driver cannot say.
  if (s === '' || /^\[?[A-Za-z]/.test(s)) return null
  const n = Number(s)
  return Number.isFinite(n) ? n : null
}

/** Parses `nvidia-smi --query-gpu=<NVIDIA_SMI_QUERY> --format=csv,noheader,nounits`. */
export function parseNvidiaSmiCsv(text: string): GpuReading[] {
  return text
    .split(/\r?\n/)
    .filter((line) => line.trim() !== '')
    .map((line) => {
      const cells = line.split(',')
      if (cells.length !== 7) throw new NvidiaSmiFormatError(`expected 7 columns, got ${cells.length}: ${line.slice(0, 200)}`)
      const index = Number(cells[0]!.trim())
      if (!Number.isInteger(index) || index < 0) throw new NvidiaSmiFormatError(`bad GPU index: ${line.slice(0, 200)}`)
      const [utilization, memoryUsedMiB, memoryTotalMiB, temperatureC, powerDrawW, fanSpeedPercent] = cells.slice(1).map(reading) as Array<number | null>
      return { index, utilization: utilization!, memoryUsedMiB: memoryUsedMiB!, memoryTotalMiB: memoryTotalMiB!, temperatureC: temperatureC!, powerDrawW: powerDrawW!, fanSpeedPercent: fanSpeedPercent! }
    })
}

/** The readings now, or null when there is no `nvidia-smi` to ask (no NVIDIA driver: GPUs unknown). */
export function queryNvidiaSmi(options: { binary?: string; timeoutMs?: number } = {}): Promise<GpuReading[] | null> {
  return new Promise((resolve) => {
    execFile(options.binary ?? 'nvidia-smi', NVIDIA_SMI_QUERY, { timeout: options.timeoutMs ?? 5000 }, (err, stdout) => {
      if (err) return resolve(null)
      try {
        resolve(parseNvidiaSmiCsv(stdout))
      } catch {
        resolve(null)
      }
    })
  })
}

/** Energy and utilization over a window (since the last takeWindow, or the start). */
export type GpuWindow = {
  /** kWh drawn by all GPUs, integrated from power readings (trapezoids between polls); null: no power reading. */
  energyKwh: number | null
  /** Time-weighted mean utilization across GPUs, percent; null: no utilization reading. */
  avgUtilization: number | null
  /** Highest memory used by any GPU, GiB; null when unknown. */
  peakMemoryGb: number | null
}

export type GpuTelemetry = {
  /** The last readings; null while unknown (no nvidia-smi, or not polled yet). */
  latest(): GpuReading[] | null
  /** Polls once now (the timer also calls it). */
  poll(): Promise<GpuReading[] | null>
  /** Energy drawn since start, kWh (null: never had a power reading). */
  totalEnergyKwh(): number | null
  /** The window since the last call (or the start), then a new one begins. */
  takeWindow(): GpuWindow
  /** Like takeWindow, without starting a new window. */
  peekWindow(): GpuWindow
  start(): void
  stop(): void
}

export type CreateGpuTelemetryInit = {
  /** @default 10000 (the Orban live-metrics cadence) */
  intervalMs?: number
  /** @default queryNvidiaSmi */
  query?: () => Promise<GpuReading[] | null>
  /** @default Date.now */
  now?: () => number
}

type Acc = { energyWh: number; hasPower: boolean; utilSeconds: number; seconds: number; hasUtil: boolean; peakMiB: number | null }
const emptyAcc = (): Acc => ({ energyWh: 0, hasPower: false, utilSeconds: 0, seconds: 0, hasUtil: false, peakMiB: null })

export function createGpuTelemetry(init: CreateGpuTelemetryInit = {}): GpuTelemetry {
  const query = init.query ?? (() => queryNvidiaSmi())
  const now = init.now ?? Date.now
  const intervalMs = init.intervalMs ?? 10_000
  let latest: GpuReading[] | null = null
  let latestAt = 0
  let total: number | null = null
  let window = emptyAcc()
  let timer: ReturnType<typeof setInterval> | undefined
  let inFlight: Promise<GpuReading[] | null> | undefined

  const sum = (gpus: GpuReading[], pick: (g: GpuReading) => number | null) => {
    const values = gpus.map(pick).filter((v): v is number => v !== null)
    return values.length ? values.reduce((a, b) => a + b, 0) : null
  }
  const mean = (gpus: GpuReading[], pick: (g: GpuReading) => number | null) => {
    const s = sum(gpus, pick)
    return s === null ? null : s / gpus.filter((g) => pick(g) !== null).length
  }

  function record(next: GpuReading[] | null, at: number) {
    if (latest && next && latestAt > 0) {
      const seconds = (at - latestAt) / 1000
      const p0 = sum(latest, (g) => g.powerDrawW)
      const p1 = sum(next, (g) => g.powerDrawW)
      if (p0 !== null && p1 !== null && seconds > 0) {
        const wh = (((p0 + p1) / 2) * seconds) / 3600
        window.energyWh += wh
        window.hasPower = true
        total = (total ?? 0) + wh / 1000
      }
      const u0 = mean(latest, (g) => g.utilization)
      const u1 = mean(next, (g) => g.utilization)
      if (u0 !== null && u1 !== null && seconds > 0) {
        window.utilSeconds += ((u0 + u1) / 2) * seconds
        window.seconds += seconds
        window.hasUtil = true
      }
    }
    if (next) {
      const peak = Math.max(...next.map((g) => g.memoryUsedMiB ?? -1))
      if (peak >= 0) window.peakMiB = Math.max(window.peakMiB ?? 0, peak)
    }
    latest = next
    latestAt = at
  }

  const view = (): GpuWindow => ({
    energyKwh: window.hasPower ? window.energyWh / 1000 : null,
    avgUtilization: window.hasUtil && window.seconds > 0 ? window.utilSeconds / window.seconds : window.hasUtil ? null : latest && mean(latest, (g) => g.utilization),
    peakMemoryGb: window.peakMiB === null ? null : window.peakMiB / 1024,
  })

  const poll = () => {
    inFlight ??= query()
      .catch(() => null)
      .then((r) => {
        record(r, now())
        return r
      })
      .finally(() => (inFlight = undefined))
    return inFlight
  }

  return {
    latest: () => latest,
    poll,
    totalEnergyKwh: () => total,
    takeWindow() {
      const w = view()
      window = emptyAcc()
      return w
    },
    peekWindow: view,
    start() {
      if (timer) return
      void poll()
      timer = setInterval(() => void poll(), intervalMs)
      timer.unref?.()
    },
    stop() {
      clearInterval(timer)
      timer = undefined
    },
  }
}
