import type { OrbanMessageType } from './orbanMessages.ts'

/**
 * Test and fuzz fixtures: one payload of every type as a sender writes it, from the examples of the
 * upstream protocol document (decimals as numbers or, as rust_decimal writes them, strings;
 * timestamps as RFC 3339 or unix seconds). Each parses as is.
 */
export const ORBAN_MESSAGE_EXAMPLES: Readonly<Record<OrbanMessageType, Readonly<Record<string, unknown>>>> = {
  AUTH_CHALLENGE: { challenge: 'q83vEjRWeJCrze8SNFZ4kA==' },
  AUTH_RESPONSE: { agent_id: 'agent-tw-a1b2c3d4', signature: 'c2lnbmF0dXJl', public_key: 'cHVibGlja2V5' },
  AUTH_SUCCESS: { jwt_token: 'eyJhbGci.x.y', expires_in: 86400 },
  AGENT_REGISTER: {
    agent_id: 'agent-tw-a1b2c3d4',
    hardware: {
      gpus: [
        { index: 0, vendor: 'NVIDIA', model: 'GeForce RTX 4090', vram_gb: 24, compute_capability: '8.9', cuda_cores: 16384, pcie_bandwidth_gbps: 64 },
        { index: 1, vendor: 'Apple', model: 'M2', vram_gb: 16, compute_capability: '', cuda_cores: null, pcie_bandwidth_gbps: 0 },
      ],
      cpu: { model: 'AMD Ryzen 9 7950X', cores: 16, threads: 32 },
      memory_gb: 64,
      storage_available_gb: 500,
    },
    capabilities: { supported_frameworks: ['pytorch', 'onnx'], max_batch_size: 32, fp16_support: true, int8_support: true },
    location: { country: 'TW', region: 'asia-east1', latency_to_platform_ms: 12 },
    availability: { hours_per_day: 24, reliability_score: 0.98 },
    mesh: { peer_id: '12D3KooWExample', multiaddrs: ['/ip4/127.0.0.1/tcp/4001'] },
  },
  REGISTER_ACK: { agent_id: 'agent-tw-a1b2c3d4', status: 'active', pricing: { base_rate_usd_per_hour: '0.50', gpu_multiplier: '2.5', effective_rate: 1.25 } },
  TASK_ASSIGN: {
    task_id: 'task-2024-001',
    job_id: 'job-inference-abc123',
    priority: 1,
    estimated_duration_sec: 300,
    requirements: { min_vram_gb: 12, min_compute_capability: '7.5', framework: 'pytorch', fp16: true },
    payload: {
      model_url: 's3://orban-models/llama-7b.bin',
      model_hash: 'sha256:abcd1234',
      input_data_url: 's3://orban-jobs/job-abc123/input.json',
      output_url: 's3://orban-jobs/job-abc123/output/',
      config: { max_tokens: 512, temperature: 0.7 },
    },
    pricing: { base_rate_usd_per_hour: '0.5', gpu_multiplier: '2.5', effective_rate: '1.25' },
  },
  TASK_ACCEPT: { task_id: 'task-2024-001', agent_id: 'agent-tw-a1b2c3d4', gpu_allocated: 0, estimated_completion: '2024-11-14T12:35:00Z' },
  TASK_REJECT: { task_id: 'task-2024-001', reason: 'insufficient_vram', details: 'Required 12GB, available 8GB' },
  TASK_PROGRESS: { task_id: 'task-2024-001', progress: 0.45, stage: 'inference', metrics: { gpu_utilization: 0.98, memory_used_gb: 11.2, throughput_tokens_per_sec: 120 } },
  TASK_COMPLETE: {
    task_id: 'task-2024-001',
    result: { output_url: 's3://orban-jobs/job-abc123/output/result.json', output_hash: 'sha256:xyz789', execution_time_sec: 287, gpu_time_sec: 285 },
    proof_of_work: { method: 'gpu_hash_challenge', challenge_id: 'ch-001', response: '0x123abc', gpu_signature: 'nvml_device_uuid' },
    metrics: { avg_gpu_utilization: 0.96, peak_memory_gb: 11.8, energy_kwh: 0.095 },
  },
  TASK_FAILED: { task_id: 'task-2024-001', error: { code: 'OOM_ERROR', message: 'Out of memory during inference', details: 'Batch size too large' }, partial_results: null },
  HEARTBEAT: {
    agent_id: 'agent-tw-a1b2c3d4',
    status: 'working',
    current_task_id: 'task-2024-001',
    gpu_status: [{ index: 0, utilization: 0.98, memory_used_gb: 11.2, memory_total_gb: 24, temperature_c: 72, power_draw_w: 350, fan_speed_percent: 65 }],
    uptime_sec: 86400,
  },
  METRICS_BATCH: {
    agent_id: 'agent-tw-a1b2c3d4',
    time_range: { start: '2024-11-14T12:00:00Z', end: 1731585900 },
    aggregated_metrics: { tasks_completed: 3, tasks_failed: 0, total_gpu_hours: 0.25, avg_gpu_utilization: 0.92, total_energy_kwh: 0.087, earnings_usd: '0.3125' },
  },
  EARNINGS_RECORD: {
    task_id: 'task-2024-001',
    earnings: { gpu_hours: 0.079, rate_usd_per_hour: '1.25', amount_usd: '0.099', bonus_multiplier: 1.05, final_amount_usd: '0.104' },
    status: 'Pending',
    estimated_payout_date: '2024-11-21',
  },
  PAYOUT_NOTIFICATION: {
    payout_id: 'payout-2024-w46',
    period: { start: '2024-11-07', end: '2024-11-13' },
    summary: { total_tasks: 847, total_gpu_hours: 67.2, gross_amount_usd: '84.00', platform_fee_usd: '4.20', net_amount_usd: '79.80' },
    payment_method: 'usdt_trc20',
    payment_address: 'TXx1234',
    status: 'processing',
  },
  POW_CHALLENGE: { challenge_id: 'ch-12345', nonce: '00ff10ab', difficulty: 4, deadline: '2024-11-14T12:35:00Z' },
  POW_RESPONSE: { challenge_id: 'ch-12345', response: '0x000012AB', computation_time_ms: 1250, gpu_signature: { device_uuid: 'GPU-abc-123', cuda_version: '12.3' }, counter: 77 },
  ERROR: { code: 'DOWNLOAD_FAILED', message: 'Failed to download model', context: { url: 's3://orban-models/llama-7b.bin', retry_count: 3 }, recoverable: true },
  STATE_SYNC: { agent_id: 'agent-tw-a1b2c3d4', last_heartbeat: '2024-11-14T12:30:00Z', active_tasks: [{ task_id: 'task-2024-001', progress: 0.67, started_at: '2024-11-14T12:25:00Z' }] },
}

