import assert from 'node:assert/strict'
import { readFile } from 'node:fs/promises'
import { test } from 'node:test'
import { createFakeNvidiaSmi } from '../../testing/fakeNvidiaSmi.ts'
import { createGpuTelemetry, parseNvidiaSmiCsv, queryNvidiaSmi } from './gpuTelemetry.ts'
import { readNvidiaGpus } from './hardwareProfile.ts'
import { orbanGpuStatus, orbanTaskMetrics } from './orbanTelemetry.ts'

const fixture = (name: string) => readFile(new URL(`../../testing/fixtures/${name}`, import.meta.url), 'utf8')

test('nvidia-smi CSV: numbers read, [N/A] is unknown (null), not 0', async () => {
  const gpus = parseNvidiaSmiCsv(await fixture('nvidia-smi-h100x2.csv'))
  assert.deepEqual(gpus[0], { index: 0, utilization: 87, memoryUsedMiB: 61234, memoryTotalMiB: 81559, temperatureC: 62, powerDrawW: 512.34, fanSpeedPercent: null })
  assert.equal(gpus[1]!.powerDrawW, 69.87)
  assert.throws(() => parseNvidiaSmiCsv('0, 1, 2\n'), /7 columns/)
})

test('the poller runs nvidia-smi with the query, integrates energy from power and averages utilization', async () => {
  const smi = await createFakeNvidiaSmi()
  await smi.setOutput(await fixture('nvidia-smi-rtx4090.csv'))
  let t = 1_000_000
  const telemetry = createGpuTelemetry({ query: () => queryNvidiaSmi({ binary: smi.binary }), now: () => t })
  assert.equal(telemetry.latest(), null, 'unknown before the first poll')
  assert.equal((await telemetry.poll())![0]!.powerDrawW, 300)
  // One hour later the card draws 100 W at 15 %: trapezoid (300 + 100) / 2 W × 1 h = 0.2 kWh.
  await smi.setOutput('0, 15, 2048, 24564, 50, 100.00, 30\n')
  t += 3_600_000
  await telemetry.poll()
  const w = telemetry.takeWindow()
  assert.ok(Math.abs(w.energyKwh! - 0.2) < 1e-9, String(w.energyKwh))
  assert.equal(w.avgUtilization, 30)
  assert.equal(w.peakMemoryGb, 10)
  assert.ok(Math.abs(telemetry.totalEnergyKwh()! - 0.2) < 1e-9)
  assert.equal(telemetry.takeWindow().energyKwh, null, 'a new window has no energy yet')
  // A wrong query fails like the real binary: readings are unknown, not zero.
  assert.equal(await queryNvidiaSmi({ binary: '/nonexistent/nvidia-smi' }), null)
})

test('heartbeat gpu_status and task metrics from readings: passively cooled fans 0, unknown GPUs left out, no readings = []', async () => {
  const h100 = parseNvidiaSmiCsv(await fixture('nvidia-smi-h100x2.csv'))
  const status = orbanGpuStatus(h100)
  assert.deepEqual(status[0], { index: 0, utilization: 87, memory_used_gb: 59.799, memory_total_gb: 79.647, temperature_c: 62, power_draw_w: 512.34, fan_speed_percent: 0 })
  assert.equal(status.length, 2)
  assert.deepEqual(orbanGpuStatus(null), [])
  assert.deepEqual(orbanGpuStatus([{ ...h100[0]!, powerDrawW: null }]), [])
  assert.deepEqual(orbanTaskMetrics(h100, 0, 12.5), { gpu_utilization: 87, memory_used_gb: 59.799, throughput_tokens_per_sec: 12.5 })
  assert.deepEqual(orbanTaskMetrics(null, 0, null), { gpu_utilization: 0, memory_used_gb: 0, throughput_tokens_per_sec: null })
})

test('output captured from a real H100 (driver 580) parses: its readings, its [N/A] fan, its hardware line', async () => {
  const [live] = parseNvidiaSmiCsv(await fixture('nvidia-smi-h100-captured.csv'))
  assert.deepEqual(live, { index: 0, utilization: 0, memoryUsedMiB: 0, memoryTotalMiB: 81559, temperatureC: 36, powerDrawW: 70.52, fanSpeedPercent: null })
  assert.deepEqual(orbanGpuStatus([live!]), [{ index: 0, utilization: 0, memory_used_gb: 0, memory_total_gb: 79.647, temperature_c: 36, power_draw_w: 70.52, fan_speed_percent: 0 }])
  const smi = await createFakeNvidiaSmi()
  await smi.setHardwareOutput(await fixture('nvidia-smi-h100-captured-hardware.csv'))
  const path = process.env.PATH
  process.env.PATH = `${smi.dir}:${path}`
  try {
    const [gpu] = await readNvidiaGpus()
    assert.equal(gpu!.model, 'NVIDIA H100 80GB HBM3')
    assert.equal(gpu!.vram_gb, 79.65)
    assert.equal(gpu!.compute_capability, '9.0')
    assert.equal(gpu!.pcie_bandwidth_gbps, 63.01)
  } finally {
    process.env.PATH = path
  }
})
