import { execFile } from 'node:child_process'
import { availableParallelism } from 'node:os'
import { promisify } from 'node:util'
import si from 'systeminformation'

const run = promisify(execFile)

/** One GPU as the Orban protocol describes it, plus what the host measured of it. */
export type GpuProfile = {
  index: number
  vendor: string
  model: string
  vram_gb: number
  compute_capability: string
  cuda_cores: number | null
  pcie_bandwidth_gbps: number
  /** Live readings (nvidia-smi), for heartbeats. */
  memory_used_gb?: number
  utilization?: number
  temperature_c?: number
  power_draw_w?: number
  fan_speed_percent?: number
  uuid?: string
  driver_version?: string
}

/** What a node host can offer, read from the OS and the GPU driver. */
export type HardwareProfile = {
  gpus: GpuProfile[]
  cpu: { model: string; cores: number; threads: number }
  memory_gb: number
  storage_available_gb: number
  /** Free RAM now, bytes. */
  ramFreeBytes: number
  /** Total VRAM of the largest GPU, bytes (0 without one). */
  vramBytes: number
}

const GB = 1024 ** 3
const round2 = (x: number) => Math.round(x * 100) / 100

/** The query readNvidiaGpus runs (what the GPUs are, once at start; live readings: gpuTelemetry). */
export const NVIDIA_SMI_HARDWARE_QUERY = [
  '--query-gpu=index,name,memory.total,memory.used,utilization.gpu,temperature.gpu,power.draw,fan.speed,uuid,compute_cap,driver_version,pcie.link.gen.max,pcie.link.width.max',
  '--format=csv,noheader,nounits',
]

/** `nvidia-smi` readings, or [] where there is no NVIDIA driver. */
export async function readNvidiaGpus(): Promise<GpuProfile[]> {
  let stdout: string
  try {
    ;({ stdout } = await run('nvidia-smi', NVIDIA_SMI_HARDWARE_QUERY, { timeout: 5000 }))
  } catch {
    return []
  }
  const num = (s: string | undefined) => {
    const n = Number(s?.trim())
    return Number.isFinite(n) ? n : undefined
  }
  return stdout
    .trim()
    .split('\n')
    .filter(Boolean)
    .map((line) => {
      const c = line.split(',').map((s) => s.trim())
      const gen = num(c[11]) ?? 0
      const width = num(c[12]) ?? 0
      // PCIe per-lane GB/s by generation (after encoding overhead).
      const perLane = [0, 0.25, 0.5, 0.985, 1.969, 3.938, 7.563][gen] ?? 0
      return {
        index: num(c[0]) ?? 0,
        vendor: 'NVIDIA',
        model: c[1] ?? 'unknown',
        vram_gb: round2((num(c[2]) ?? 0) / 1024),
        memory_used_gb: round2((num(c[3]) ?? 0) / 1024),
        utilization: num(c[4]),
        temperature_c: num(c[5]),
        power_draw_w: num(c[6]),
        fan_speed_percent: num(c[7]),
        uuid: c[8],
        compute_capability: c[9] ?? '',
        driver_version: c[10],
        cuda_cores: null,
        pcie_bandwidth_gbps: round2(perLane * width),
      }
    })
}

/**
 * The host's hardware: GPUs from nvidia-smi where present (otherwise what the OS reports of its
 * graphics controllers), CPU, memory and disk from `systeminformation`.
 */
export async function readHardwareProfile(): Promise<HardwareProfile> {
  const [mem, cpu, disks, nvidia] = await Promise.all([si.mem(), si.cpu(), si.fsSize().catch(() => []), readNvidiaGpus()])
  let gpus = nvidia
  if (gpus.length === 0) {
    const graphics = await si.graphics().catch(() => ({ controllers: [] }))
    gpus = graphics.controllers
      .filter((g) => (g.vram ?? 0) > 0)
      .map((g, index) => ({
        index,
        vendor: g.vendor || 'unknown',
        model: g.model || 'unknown',
        vram_gb: round2((g.vram ?? 0) / 1024),
        compute_capability: '',
        cuda_cores: null,
        pcie_bandwidth_gbps: 0,
      }))
  }
  const root = disks.find((d) => d.mount === '/') ?? disks[0]
  return {
    gpus,
    cpu: { model: `${cpu.manufacturer} ${cpu.brand}`.trim(), cores: cpu.physicalCores || cpu.cores, threads: availableParallelism() },
    memory_gb: round2(mem.total / GB),
    storage_available_gb: round2((root?.available ?? 0) / GB),
    ramFreeBytes: mem.available,
    vramBytes: Math.max(0, ...gpus.map((g) => g.vram_gb * GB)),
  }
}
