import { z } from 'zod'
import { decimal, id, json, nonNegative, pricing, progress, served, text, timestamp, uint32 } from './orbanFieldSchemas.ts'

/** A task from assignment to its result: the decision, progress reports, completion or failure. */
export const orbanTaskPayloads = {
  TASK_ASSIGN: z.object({
    task_id: id,
    job_id: id,
    priority: uint32,
    estimated_duration_sec: uint32,
    requirements: z.object({
      min_vram_gb: nonNegative,
      min_compute_capability: z.string().max(32),
      framework: z.string().max(64),
      fp16: z.boolean(),
    }),
    payload: z.object({
      model_url: text,
      model_hash: text,
      input_data_url: text,
      output_url: text,
      config: json.default(null),
    }),
    pricing,
  }),
  TASK_ACCEPT: z.object({ task_id: id, agent_id: id, gpu_allocated: uint32, estimated_completion: timestamp }),
  TASK_REJECT: z.object({ task_id: id, reason: z.string().max(256), details: text.default('') }),
  TASK_PROGRESS: z.object({
    task_id: id,
    progress,
    stage: z.string().max(256),
    metrics: z.object({
      gpu_utilization: decimal,
      memory_used_gb: decimal,
      throughput_tokens_per_sec: decimal.nullable().default(null),
    }),
    served: served.optional(),
  }),
  TASK_COMPLETE: z.object({
    task_id: id,
    result: z.object({ output_url: text, output_hash: text, execution_time_sec: nonNegative, gpu_time_sec: nonNegative }),
    proof_of_work: z.object({
      method: z.string().max(256),
      challenge_id: z.string().max(256),
      /** Text, or bytes as serde writes a Vec<u8> (an array of numbers), which become hex. */
      response: z.union([
        text,
        z
          .array(z.number().int().min(0).max(255))
          .max(2048)
          .transform((bytes) => bytes.map((b) => b.toString(16).padStart(2, '0')).join('')),
      ]),
      gpu_signature: text,
    }),
    metrics: z.object({ avg_gpu_utilization: decimal, peak_memory_gb: decimal, energy_kwh: decimal }),
  }),
  TASK_FAILED: z.object({
    task_id: id,
    error: z.object({ code: z.string().max(256), message: text, details: text.default('') }),
    partial_results: text.nullable().default(null),
  }),
} as const
