/**
 * What an Orban agent is given and what it offers: `createOrbanAgent`'s options, the agent's public
 * face, its events, and the task types the caller's `onTask` sees.
 */

import type { Logger } from '../logger.ts'
import type { OrbanGpuStatus, OrbanMessage, OrbanMessageOf, OrbanPayload, OrbanPayloadInput, OrbanPricing } from './orbanMessages.ts'

type RegisterInput = OrbanPayloadInput<'AGENT_REGISTER'>

/** What the agent tells the platform about itself at every (re)connect. */
export type OrbanRegistration = Omit<RegisterInput, 'agent_id'>

export type OrbanTask = OrbanPayload<'TASK_ASSIGN'>

/** The caller's answer to a TASK_ASSIGN. */
export type OrbanTaskDecision =
  | {
      accept: true
      /** GPU index to run on. @default the smallest registered GPU with enough VRAM */
      gpu?: number
      /** @default now + the task's estimated duration */
      estimatedCompletion?: Date
    }
  | { accept: false; reason: string; details?: string }

/**
 * Reports on one task. Calls made before the decision has been sent wait for it (and are dropped
 * if the task was rejected); calls after complete/fail are ignored. TASK_COMPLETE and TASK_FAILED
 * made while disconnected are delivered after the next reconnect.
 */
export type OrbanTaskController = {
  readonly task: OrbanTask
  /** The GPU it runs on: the smallest registered one with enough VRAM, or the decision's choice. */
  readonly gpu: number
  /** Aborted when the agent stops. */
  readonly signal: AbortSignal
  /** `served`: shardmesh's extension, what the shard served since the agent started. */
  progress(update: { progress: number; stage: string; metrics?: Partial<OrbanPayloadInput<'TASK_PROGRESS'>['metrics']>; served?: OrbanPayloadInput<'TASK_PROGRESS'>['served'] }): void
  complete(report: {
    result: OrbanPayloadInput<'TASK_COMPLETE'>['result']
    proof_of_work?: OrbanPayloadInput<'TASK_COMPLETE'>['proof_of_work']
    metrics?: OrbanPayloadInput<'TASK_COMPLETE'>['metrics']
  }): void
  fail(error: { code: string; message: string; details?: string }, partialResults?: string): void
}

export type OrbanAgentState = 'connecting' | 'authenticating' | 'registering' | 'ready' | 'backoff' | 'stopped'

export type OrbanAgentStopReason = 'aborted' | 'auth_failed' | 'fatal_error' | 'reconnect_exhausted'

export type OrbanAgentStop = {
  reason: OrbanAgentStopReason
  /** The platform's ERROR that ended it, if one did. */
  error?: OrbanMessageOf<'ERROR'>
}

export type OrbanActiveTask = { task_id: string; progress: number; started_at: string }

export type OrbanAgentEvents = {
  state: OrbanAgentState
  /** REGISTER_ACK: the agent is ready (again). */
  registered: OrbanMessageOf<'REGISTER_ACK'>
  earnings: OrbanMessageOf<'EARNINGS_RECORD'>
  payout: OrbanMessageOf<'PAYOUT_NOTIFICATION'>
  /** An ERROR frame from the platform. */
  'platform-error': OrbanMessageOf<'ERROR'>
  task: OrbanTask
  pow: { challengeId: string; difficulty: number; counter: bigint; ms: number }
  backoff: { attempt: number; delayMs: number }
  stopped: OrbanAgentStop
  /** Every frame received, parsed. */
  message: OrbanMessage
}

export type CreateOrbanAgentInit = {
  /** The platform: `ws(s)://` or `http(s)://` base URL; `/agent/v1/connect` is used unless the URL has a path. */
  url: string
  /** Ed25519 key: a 32-byte seed or a libp2p Ed25519 key's 64-byte `.raw`. */
  key: Uint8Array
  /** @default agentIdOf(public key) */
  agentId?: string
  /** Sent as AGENT_REGISTER at every (re)connect; a function is asked again each time. */
  registration: OrbanRegistration | (() => OrbanRegistration | Promise<OrbanRegistration>)
  /**
   * Decides on a TASK_ASSIGN the hardware can hold (tasks needing more VRAM than any registered
   * GPU has are rejected before this is asked). Keep the controller to report progress and the
   * result. Without it every task is rejected.
   */
  onTask?: (task: OrbanTask, controller: OrbanTaskController) => OrbanTaskDecision | Promise<OrbanTaskDecision>
  /** Live GPU readings for heartbeats. @default none */
  gpuStatus?: () => OrbanGpuStatus[] | Promise<OrbanGpuStatus[]>
  /** The mesh host's load, sent in each HEARTBEAT (`mesh_load`) when known. */
  meshLoad?: () => { activeSessions: number; queueDepth: number } | undefined
  /** Sent in POW_RESPONSE. @default { device_uuid: 'unknown', cuda_version: null } */
  gpuSignature?: { device_uuid: string; cuda_version?: string | null }
  /** @default 30000 */
  heartbeatIntervalMs?: number
  /** From opening the socket to REGISTER_ACK. @default 30000 */
  handshakeTimeoutMs?: number
  reconnect?: {
    /** First delay; doubles each failed try. @default 1000 */
    baseDelayMs?: number
    /** @default 300000 */
    maxDelayMs?: number
    /** Consecutive failed tries before giving up (upstream: 10). @default Infinity */
    maxAttempts?: number
  }
  /** Challenges asking more zero bits are refused with an ERROR. @default 32 */
  maxPowDifficulty?: number
  signal?: AbortSignal
  logger?: Logger
  /** @default globalThis.WebSocket */
  WebSocket?: typeof WebSocket
}

export type OrbanAgent = {
  readonly agentId: string
  readonly publicKey: Uint8Array
  readonly state: OrbanAgentState
  /** Pricing from the last REGISTER_ACK. */
  readonly pricing: OrbanPricing | undefined
  /** The JWT from the last AUTH_SUCCESS. */
  readonly jwt: { token: string; expiresAt: Date } | undefined
  on<E extends keyof OrbanAgentEvents>(event: E, listener: (value: OrbanAgentEvents[E]) => void): () => void
  /** Resolves once registered (at once if ready); rejects when the agent stops first. */
  ready(signal?: AbortSignal): Promise<void>
  /** Sends a HEARTBEAT now (false when not connected). */
  heartbeat(): Promise<boolean>
  /** Sends a METRICS_BATCH; the time range defaults to the end of the last batch (or the start) until now. */
  sendMetrics(batch: {
    aggregated_metrics: OrbanPayloadInput<'METRICS_BATCH'>['aggregated_metrics']
    time_range?: OrbanPayloadInput<'METRICS_BATCH'>['time_range']
  }): boolean
  activeTasks(): OrbanActiveTask[]
  /** Closes the connection and stops reconnecting. */
  stop(): Promise<OrbanAgentStop>
  /** Settles when the agent has stopped, for whatever reason. */
  readonly done: Promise<OrbanAgentStop>
}
