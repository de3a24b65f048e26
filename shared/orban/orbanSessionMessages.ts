import { z } from 'zod'
import { availability, capabilities, hardware, id, json, location, mesh, pricing, progress, text, timestamp, uint64 } from './orbanFieldSchemas.ts'

/** The session: the Ed25519 handshake, registration, the re-sync after a reconnect, and errors either side reports. */
export const orbanSessionPayloads = {
  AUTH_CHALLENGE: z.object({ challenge: z.string().min(1).max(1024) }),
  AUTH_RESPONSE: z.object({ agent_id: id, signature: z.string().max(256), public_key: z.string().max(256) }),
  AUTH_SUCCESS: z.object({ jwt_token: z.string().max(8192), expires_in: uint64 }),
  AGENT_REGISTER: z.object({ agent_id: id, hardware, capabilities, location, availability, mesh: mesh.optional() }),
  REGISTER_ACK: z.object({ agent_id: id, status: z.string().max(64), pricing }),
  ERROR: z.object({ code: z.string().max(256), message: text, context: json.default(null), recoverable: z.boolean() }),
  STATE_SYNC: z.object({
    agent_id: id,
    last_heartbeat: timestamp,
    active_tasks: z.array(z.object({ task_id: id, progress, started_at: timestamp })).max(1024),
  }),
} as const
