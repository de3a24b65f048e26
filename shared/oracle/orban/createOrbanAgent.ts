import { hexToBytes } from '@noble/hashes/utils.js'
import { silentLogger, type Logger } from '../../logger.ts'
import { bytesToBase64 } from './base64.ts'
import { createOrbanIdentity, signOrbanChallenge } from './orbanIdentity.ts'
import {
  encodeOrbanMessage,
  ORBAN_PATH,
  ORBAN_SUBPROTOCOL,
  OrbanMessageError,
  parseOrbanMessage,
  type OrbanGpuStatus,
  type OrbanMessage,
  type OrbanMessageOf,
  type OrbanMessageType,
  type OrbanPayload,
  type OrbanPayloadInput,
  type OrbanPricing,
} from './orbanMessages.ts'
import { fromProtobuf } from './orbanProtobuf.ts'
import { solveProofOfWork } from './proofOfWork.ts'

/**
 * The agent side of the Orban protocol over the global WebSocket (browsers, Node 22+): connect,
 * answer the Ed25519 challenge, register, heartbeat, take tasks through the caller's callback,
 * answer proofs of work, surface earnings; reconnect with exponential backoff and re-sync state.
 */

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

/** The agent endpoint for a platform URL. */
export function orbanEndpoint(url: string): string {
  const endpoint = new URL(url)
  if (endpoint.protocol === 'http:') endpoint.protocol = 'ws:'
  else if (endpoint.protocol === 'https:') endpoint.protocol = 'wss:'
  if (endpoint.pathname === '/' || endpoint.pathname === '') endpoint.pathname = ORBAN_PATH
  return endpoint.toString()
}

type TaskEntry = {
  task: OrbanTask
  gpu: number
  progress: number
  startedAt: string
  state: 'deciding' | 'accepted' | 'rejected' | 'done'
  waiting: Array<() => void>
}

type Outcome = { registered: boolean; stop?: OrbanAgentStop }

/** Starts an agent; it connects at once and keeps reconnecting until stopped or told the key is wrong. */
export async function createOrbanAgent(init: CreateOrbanAgentInit): Promise<OrbanAgent> {
  const identity = await createOrbanIdentity(init.key, init.agentId)
  const { agentId } = identity
  const log = init.logger ?? silentLogger
  const WebSocketImpl = init.WebSocket ?? globalThis.WebSocket
  const endpoint = orbanEndpoint(init.url)
  const heartbeatIntervalMs = init.heartbeatIntervalMs ?? 30_000
  const handshakeTimeoutMs = init.handshakeTimeoutMs ?? 30_000
  const baseDelayMs = init.reconnect?.baseDelayMs ?? 1000
  const maxDelayMs = init.reconnect?.maxDelayMs ?? 300_000
  const maxAttempts = init.reconnect?.maxAttempts ?? Infinity
  const maxPowDifficulty = init.maxPowDifficulty ?? 32
  const gpuSignature = { device_uuid: init.gpuSignature?.device_uuid ?? 'unknown', cuda_version: init.gpuSignature?.cuda_version ?? null }

  const stopController = new AbortController()
  const stopSignal = stopController.signal
  const onOuterAbort = () => stopController.abort(init.signal?.reason)
  if (init.signal?.aborted) stopController.abort(init.signal.reason)
  else init.signal?.addEventListener('abort', onOuterAbort, { once: true })

  const listeners = new Map<keyof OrbanAgentEvents, Set<(value: never) => void>>()
  function on<E extends keyof OrbanAgentEvents>(event: E, listener: (value: OrbanAgentEvents[E]) => void): () => void {
    let set = listeners.get(event)
    if (!set) listeners.set(event, (set = new Set()))
    const stored = listener as (value: never) => void
    set.add(stored)
    return () => void set.delete(stored)
  }
  function emit<E extends keyof OrbanAgentEvents>(event: E, value: OrbanAgentEvents[E]) {
    for (const listener of listeners.get(event) ?? []) {
      try {
        ;(listener as (v: OrbanAgentEvents[E]) => void)(value)
      } catch (e) {
        log.error({ event, err: e }, 'orban agent listener threw')
      }
    }
  }

  const startedAt = Date.now()
  let state: OrbanAgentState = 'connecting'
  let pricing: OrbanPricing | undefined
  let jwt: { token: string; expiresAt: Date } | undefined
  let lastHeartbeat: Date | undefined
  let lastMetricsEnd: Date | undefined
  let hadSession = false
  let socket: WebSocket | undefined
  let readyNow = false
  const tasks = new Map<string, TaskEntry>()
  // Results that must reach the platform even across a disconnect.
  const outbox: string[] = []

  function setState(next: OrbanAgentState) {
    if (state === next) return
    state = next
    emit('state', next)
  }

  /** Sends on a given socket (the handshake, before the session is ready). */
  function sendOn<K extends OrbanMessageType>(ws: WebSocket, type: K, payload: OrbanPayloadInput<K>): boolean {
    const text = encodeOrbanMessage(type, payload)
    if (ws.readyState !== 1) return false
    ws.send(text)
    return true
  }

  /** Sends on the registered session; false (dropped) when there is none: an unauthenticated socket must see nothing else. */
  function send<K extends OrbanMessageType>(type: K, payload: OrbanPayloadInput<K>): boolean {
    if (!readyNow || !socket) return false
    return sendOn(socket, type, payload)
  }

  /** Sends when ready, else keeps it for the next session. */
  function sendOrKeep<K extends OrbanMessageType>(type: K, payload: OrbanPayloadInput<K>) {
    sendTextOrKeep(encodeOrbanMessage(type, payload))
  }
  function sendTextOrKeep(text: string) {
    if (readyNow && socket?.readyState === 1) socket.send(text)
    else outbox.push(text)
  }

  const meshLoad = () => {
    const load = init.meshLoad?.()
    return load ? { mesh_load: { active_sessions: load.activeSessions, queue_depth: load.queueDepth } } : {}
  }

  async function heartbeat(): Promise<boolean> {
    if (!readyNow) return false
    let gpus: OrbanGpuStatus[] = []
    try {
      gpus = (await init.gpuStatus?.()) ?? []
    } catch (e) {
      log.warn({ err: e }, 'orban agent: reading GPU status failed')
    }
    const working = [...tasks.values()].find((t) => t.state === 'accepted')
    const sent = send('HEARTBEAT', {
      agent_id: agentId,
      status: working ? 'working' : 'idle',
      current_task_id: working?.task.task_id ?? null,
      gpu_status: gpus,
      uptime_sec: Math.floor((Date.now() - startedAt) / 1000),
      ...meshLoad(),
    })
    if (sent) lastHeartbeat = new Date()
    return sent
  }

  function activeTasks(): OrbanActiveTask[] {
    return [...tasks.values()].filter((t) => t.state === 'accepted').map((t) => ({ task_id: t.task.task_id, progress: t.progress, started_at: t.startedAt }))
  }

  async function handleTask(task: OrbanTask) {
    emit('task', task)
    const existing = tasks.get(task.task_id)
    if (existing?.state === 'accepted') {
      // The platform re-sent an assignment we already run (e.g. after a reconnect): confirm it again.
      send('TASK_ACCEPT', { task_id: task.task_id, agent_id: agentId, gpu_allocated: existing.gpu, estimated_completion: new Date(Date.now() + task.estimated_duration_sec * 1000) })
      return
    }
    if (existing) return
    const registration = await currentRegistration
    const fitting = (registration?.hardware.gpus ?? [])
      .map((g) => ({ index: g.index, vram: Number(g.vram_gb) }))
      .filter((g) => g.vram >= task.requirements.min_vram_gb)
      .sort((a, b) => a.vram - b.vram)
    // A task asking for no VRAM runs on the CPU (or the page's WebGPU, which reports none).
    if (task.requirements.min_vram_gb === 0 && fitting.length === 0) fitting.push({ index: 0, vram: 0 })
    if (fitting.length === 0) {
      const available = Math.max(0, ...(registration?.hardware.gpus ?? []).map((g) => Number(g.vram_gb)))
      send('TASK_REJECT', { task_id: task.task_id, reason: 'insufficient_vram', details: `Required ${task.requirements.min_vram_gb}GB, available ${available}GB` })
      log.info({ taskId: task.task_id, required: task.requirements.min_vram_gb, available }, 'orban agent: task rejected, not enough VRAM')
      return
    }
    const entry: TaskEntry = { task, gpu: fitting[0]!.index, progress: 0, startedAt: new Date().toISOString(), state: 'deciding', waiting: [] }
    tasks.set(task.task_id, entry)
    const controller = taskController(entry)
    let decision: OrbanTaskDecision
    try {
      decision = init.onTask ? await init.onTask(task, controller) : { accept: false, reason: 'not_accepting', details: 'this agent takes no tasks' }
    } catch (e) {
      log.error({ taskId: task.task_id, err: e }, 'orban agent: task callback threw')
      decision = { accept: false, reason: 'agent_error', details: (e as Error).message ?? String(e) }
    }
    if (decision.accept) {
      entry.gpu = decision.gpu ?? entry.gpu
      entry.state = 'accepted'
      sendOrKeep('TASK_ACCEPT', {
        task_id: task.task_id,
        agent_id: agentId,
        gpu_allocated: entry.gpu,
        estimated_completion: decision.estimatedCompletion ?? new Date(Date.now() + task.estimated_duration_sec * 1000),
      })
    } else {
      entry.state = 'rejected'
      tasks.delete(task.task_id)
      send('TASK_REJECT', { task_id: task.task_id, reason: decision.reason, details: decision.details ?? '' })
    }
    for (const run of entry.waiting.splice(0)) run()
  }

  function taskController(entry: TaskEntry): OrbanTaskController {
    const taskId = entry.task.task_id
    // Runs a report once the decision is out; drops it when the task is no longer running.
    const whenAccepted = (report: () => void) => {
      if (entry.state === 'deciding') entry.waiting.push(() => whenAccepted(report))
      else if (entry.state === 'accepted') report()
      else log.debug({ taskId }, 'orban agent: report on a task that is not running dropped')
    }
    const finish = () => {
      entry.state = 'done'
      tasks.delete(taskId)
    }
    // Reports are encoded (validated) at the call, so a bad one throws to the caller, and sent when accepted.
    return {
      task: entry.task,
      get gpu() {
        return entry.gpu
      },
      signal: stopSignal,
      progress(update) {
        const text = encodeOrbanMessage('TASK_PROGRESS', {
          task_id: taskId,
          progress: update.progress,
          stage: update.stage,
          metrics: { gpu_utilization: 0, memory_used_gb: 0, throughput_tokens_per_sec: null, ...update.metrics },
          ...(update.served ? { served: update.served } : {}),
        })
        whenAccepted(() => {
          entry.progress = update.progress
          if (readyNow && socket?.readyState === 1) socket.send(text)
        })
      },
      complete(report) {
        const text = encodeOrbanMessage('TASK_COMPLETE', {
          task_id: taskId,
          result: report.result,
          proof_of_work: report.proof_of_work ?? { method: 'none', challenge_id: '', response: '', gpu_signature: gpuSignature.device_uuid },
          metrics: report.metrics ?? { avg_gpu_utilization: 0, peak_memory_gb: 0, energy_kwh: 0 },
        })
        whenAccepted(() => {
          finish()
          sendTextOrKeep(text)
        })
      },
      fail(error, partialResults) {
        const text = encodeOrbanMessage('TASK_FAILED', {
          task_id: taskId,
          error: { code: error.code, message: error.message, details: error.details ?? '' },
          partial_results: partialResults ?? null,
        })
        whenAccepted(() => {
          finish()
          sendTextOrKeep(text)
        })
      },
    }
  }

  async function answerPow(challenge: OrbanMessageOf<'POW_CHALLENGE'>) {
    const context = { challenge_id: challenge.challenge_id }
    if (challenge.difficulty > maxPowDifficulty) {
      send('ERROR', { code: 'POW_TOO_HARD', message: `difficulty ${challenge.difficulty} exceeds ${maxPowDifficulty} bits`, context, recoverable: true })
      return
    }
    const started = Date.now()
    const deadline = AbortSignal.timeout(Math.max(0, Date.parse(challenge.deadline) - started))
    try {
      const solution = await solveProofOfWork({ nonce: hexToBytes(challenge.nonce), difficulty: challenge.difficulty, signal: AbortSignal.any([stopSignal, deadline]) })
      const ms = Date.now() - started
      send('POW_RESPONSE', { challenge_id: challenge.challenge_id, response: solution.response, computation_time_ms: ms, gpu_signature: gpuSignature, counter: solution.counter })
      emit('pow', { challengeId: challenge.challenge_id, difficulty: challenge.difficulty, counter: solution.counter, ms })
    } catch (e) {
      if (stopSignal.aborted) return
      log.warn({ challengeId: challenge.challenge_id, err: e }, 'orban agent: proof of work missed its deadline')
      send('ERROR', { code: 'TIMEOUT', message: 'proof of work missed its deadline', context, recoverable: true })
    }
  }

  let currentRegistration: Promise<OrbanRegistration | undefined> = Promise.resolve(undefined)

  /** One connection, from opening to close; says whether it got registered and whether to stop. */
  function connectOnce(): Promise<Outcome> {
    return new Promise<Outcome>((resolve) => {
      let registered = false
      let stop: OrbanAgentStop | undefined
      let heartbeatTimer: ReturnType<typeof setInterval> | undefined
      setState('connecting')
      let ws: WebSocket
      try {
        ws = new WebSocketImpl(endpoint, ORBAN_SUBPROTOCOL)
      } catch (e) {
        log.warn({ endpoint, err: e }, 'orban agent: cannot open a WebSocket')
        resolve({ registered })
        return
      }
      socket = ws
      ws.binaryType = 'arraybuffer'
      const close = (code: number, reason: string) => {
        try {
          ws.close(code, reason)
        } catch {
          // Already closing.
        }
      }
      const handshakeTimer = setTimeout(() => {
        log.warn({ endpoint, state }, 'orban agent: handshake timed out')
        close(4000, 'handshake timeout')
      }, handshakeTimeoutMs)
      const onAbort = () => close(1000, 'agent stopping')
      stopSignal.addEventListener('abort', onAbort, { once: true })

      ws.onopen = () => {
        if (ws.protocol !== ORBAN_SUBPROTOCOL) {
          log.warn({ protocol: ws.protocol }, 'orban agent: platform did not accept the subprotocol')
          close(4002, 'subprotocol')
          return
        }
        setState('authenticating')
      }
      ws.onerror = () => log.debug({ endpoint }, 'orban agent: socket error')
      ws.onclose = (event) => {
        clearTimeout(handshakeTimer)
        clearInterval(heartbeatTimer)
        stopSignal.removeEventListener('abort', onAbort)
        readyNow = false
        if (socket === ws) socket = undefined
        log.info({ code: event.code, reason: event.reason, registered }, 'orban agent: disconnected')
        resolve({ registered, stop })
      }
      ws.onmessage = (event: MessageEvent) => {
        let message: OrbanMessage
        try {
          message = typeof event.data === 'string' ? parseOrbanMessage(event.data) : fromProtobuf(new Uint8Array(event.data as ArrayBuffer))
        } catch (e) {
          log.warn({ err: e instanceof OrbanMessageError ? e.message : e }, 'orban agent: unreadable frame from the platform ignored')
          return
        }
        emit('message', message)
        void handle(message).catch((e: unknown) => log.error({ type: message.type, err: e }, 'orban agent: handling a message failed'))
      }

      async function handle(message: OrbanMessage) {
        switch (message.type) {
          case 'AUTH_CHALLENGE': {
            // Only "orban-auth-v1" ‖ a 32-byte challenge is ever signed (orbanIdentity says why):
            // a platform offering other bytes gets no signature at all.
            let signature: string
            try {
              signature = await signOrbanChallenge(identity.seed, message.challenge)
            } catch (e) {
              log.warn({ err: e instanceof Error ? e.message : e }, 'orban agent: challenge refused (not base64 of 32 bytes); nothing signed')
              close(4001, 'bad challenge')
              return
            }
            sendOn(ws, 'AUTH_RESPONSE', { agent_id: agentId, signature, public_key: bytesToBase64(identity.publicKey) })
            return
          }
          case 'AUTH_SUCCESS': {
            jwt = { token: message.jwt_token, expiresAt: new Date(Date.now() + message.expires_in * 1000) }
            setState('registering')
            currentRegistration = Promise.resolve(typeof init.registration === 'function' ? init.registration() : init.registration)
            const registration = await currentRegistration
            if (!registration) return
            sendOn(ws, 'AGENT_REGISTER', { agent_id: agentId, ...registration })
            return
          }
          case 'REGISTER_ACK': {
            clearTimeout(handshakeTimer)
            registered = true
            readyNow = true
            pricing = message.pricing
            if (hadSession) send('STATE_SYNC', { agent_id: agentId, last_heartbeat: lastHeartbeat ?? new Date(startedAt), active_tasks: activeTasks() })
            hadSession = true
            for (const text of outbox.splice(0)) ws.send(text)
            setState('ready')
            emit('registered', message)
            await heartbeat()
            heartbeatTimer = setInterval(() => void heartbeat(), heartbeatIntervalMs)
            return
          }
          case 'TASK_ASSIGN':
            if (readyNow) await handleTask(message)
            return
          case 'POW_CHALLENGE':
            await answerPow(message)
            return
          case 'EARNINGS_RECORD':
            emit('earnings', message)
            return
          case 'PAYOUT_NOTIFICATION':
            emit('payout', message)
            return
          case 'ERROR': {
            emit('platform-error', message)
            log.warn({ code: message.code, message: message.message, recoverable: message.recoverable }, 'orban agent: platform error')
            if (message.code === 'AUTH_FAILED') stop = { reason: 'auth_failed', error: message }
            else if (!message.recoverable) stop = { reason: 'fatal_error', error: message }
            // 1000 tells the Oracle this agent leaves (its range moves at once); a reconnect is not a leave.
            if (stop) close(1000, 'stopping')
            else close(4003, 'reconnecting')
            return
          }
          default:
            log.debug({ type: message.type }, 'orban agent: message not meant for an agent ignored')
        }
      }
    })
  }

  const sleep = (ms: number) =>
    new Promise<void>((resolve) => {
      const timer = setTimeout(done, ms)
      function done() {
        clearTimeout(timer)
        stopSignal.removeEventListener('abort', done)
        resolve()
      }
      stopSignal.addEventListener('abort', done, { once: true })
    })

  async function run(): Promise<OrbanAgentStop> {
    let attempt = 0
    while (!stopSignal.aborted) {
      const outcome = await connectOnce()
      if (outcome.stop) return outcome.stop
      if (stopSignal.aborted) break
      if (outcome.registered) attempt = 0
      if (attempt >= maxAttempts) return { reason: 'reconnect_exhausted' }
      const delayMs = Math.min(baseDelayMs * 2 ** attempt, maxDelayMs)
      attempt++
      setState('backoff')
      emit('backoff', { attempt, delayMs })
      log.info({ attempt, delayMs }, 'orban agent: reconnecting after a pause')
      await sleep(delayMs)
    }
    return { reason: 'aborted' }
  }

  const done = run().then((result) => {
    init.signal?.removeEventListener('abort', onOuterAbort)
    setState('stopped')
    emit('stopped', result)
    log.info({ reason: result.reason }, 'orban agent: stopped')
    return result
  })

  return {
    agentId,
    publicKey: identity.publicKey,
    get state() {
      return state
    },
    get pricing() {
      return pricing
    },
    get jwt() {
      return jwt
    },
    on,
    ready(signal) {
      if (readyNow) return Promise.resolve()
      if (state === 'stopped') return Promise.reject(new Error('the Orban agent has stopped'))
      return new Promise<void>((resolve, reject) => {
        const offReady = on('registered', () => finish(resolve))
        const offStop = on('stopped', (s) => finish(() => reject(new Error(`the Orban agent stopped: ${s.reason}`))))
        const onAbort = () => finish(() => reject(signal!.reason))
        signal?.addEventListener('abort', onAbort, { once: true })
        function finish(then: () => void) {
          offReady()
          offStop()
          signal?.removeEventListener('abort', onAbort)
          then()
        }
      })
    },
    heartbeat,
    sendMetrics(batch) {
      const end = new Date()
      const sent = send('METRICS_BATCH', {
        agent_id: agentId,
        time_range: batch.time_range ?? { start: lastMetricsEnd ?? new Date(startedAt), end },
        aggregated_metrics: batch.aggregated_metrics,
      })
      if (sent) lastMetricsEnd = end
      return sent
    },
    activeTasks,
    async stop() {
      stopController.abort(new Error('agent stopped'))
      return done
    },
    done,
  }
}
