import { silentLogger } from '../logger.ts'
import { createOrbanAgentEmitter } from './orbanAgentEvents.ts'
import type { CreateOrbanAgentInit, OrbanAgent, OrbanAgentState } from './orbanAgentTypes.ts'
import { createOrbanConnector, orbanEndpoint } from './orbanConnection.ts'
import { createOrbanDispatcher } from './orbanDispatch.ts'
import { createOrbanHandshake } from './orbanHandshake.ts'
import { createOrbanIdentity } from '../identity/orbanIdentity.ts'
import { createOrbanLink } from './orbanLink.ts'
import { createOrbanPowResponder } from './orbanPow.ts'
import { runOrbanReconnects } from './orbanReconnect.ts'
import { createOrbanTasks } from './orbanTasks.ts'
import { createOrbanTelemetry } from './orbanTelemetry.ts'

/**
 * The agent side of the Orban protocol over the global WebSocket (browsers, Node 22+): connect,
 * answer the Ed25519 challenge, register, heartbeat, take tasks through the caller's callback,
 * answer proofs of work, surface earnings; reconnect with exponential backoff and re-sync state.
 *
 * The parts, each made by its own factory and given what it needs: the link (the open socket and
 * what may go out on it), the connector (one socket's life), the handshake, the dispatcher (each
 * frame to its handler), tasks, telemetry (heartbeats, metrics), proof of work, and the reconnect loop.
 */

export { orbanEndpoint }
export type {
  CreateOrbanAgentInit,
  OrbanActiveTask,
  OrbanAgent,
  OrbanAgentEvents,
  OrbanAgentState,
  OrbanAgentStop,
  OrbanAgentStopReason,
  OrbanRegistration,
  OrbanTask,
  OrbanTaskController,
  OrbanTaskDecision,
} from './orbanAgentTypes.ts'

/** Starts an agent; it connects at once and keeps reconnecting until stopped or told the key is wrong. */
export async function createOrbanAgent(init: CreateOrbanAgentInit): Promise<OrbanAgent> {
  const identity = await createOrbanIdentity(init.key, init.agentId)
  const { agentId } = identity
  const log = init.logger ?? silentLogger
  const endpoint = orbanEndpoint(init.url)
  const gpuSignature = { device_uuid: init.gpuSignature?.device_uuid ?? 'unknown', cuda_version: init.gpuSignature?.cuda_version ?? null }
  const startedAt = Date.now()

  const stopController = new AbortController()
  const stopSignal = stopController.signal
  const onOuterAbort = () => stopController.abort(init.signal?.reason)
  if (init.signal?.aborted) stopController.abort(init.signal.reason)
  else init.signal?.addEventListener('abort', onOuterAbort, { once: true })

  const events = createOrbanAgentEmitter(log)
  let state: OrbanAgentState = 'connecting'
  const setState = (next: OrbanAgentState) => {
    if (state === next) return
    state = next
    events.emit('state', next)
  }

  const link = createOrbanLink()
  const tasks = createOrbanTasks({ agentId, gpuSignature, onTask: init.onTask }, { link, events, log, stopSignal, registration: () => handshake.registration() })
  const telemetry = createOrbanTelemetry({ agentId, startedAt, gpuStatus: init.gpuStatus, meshLoad: init.meshLoad }, { link, tasks, log })
  const handshake = createOrbanHandshake(
    { registration: init.registration, startedAt, heartbeatIntervalMs: init.heartbeatIntervalMs ?? 30_000 },
    { identity, link, events, log, setState, tasks, telemetry },
  )
  const answerPow = createOrbanPowResponder({ maxDifficulty: init.maxPowDifficulty ?? 32, gpuSignature }, { link, events, log, stopSignal })
  const dispatch = createOrbanDispatcher({ handshake, tasks, answerPow, link, events, log })
  const connectOnce = createOrbanConnector(
    { endpoint, WebSocket: init.WebSocket ?? globalThis.WebSocket, handshakeTimeoutMs: init.handshakeTimeoutMs ?? 30_000 },
    { link, events, log, stopSignal, state: () => state, setState, dispatch },
  )

  const done = runOrbanReconnects(
    { baseDelayMs: init.reconnect?.baseDelayMs ?? 1000, maxDelayMs: init.reconnect?.maxDelayMs ?? 300_000, maxAttempts: init.reconnect?.maxAttempts ?? Infinity },
    { connectOnce, events, log, setState, stopSignal },
  ).then((result) => {
    init.signal?.removeEventListener('abort', onOuterAbort)
    setState('stopped')
    events.emit('stopped', result)
    log.info({ reason: result.reason }, 'orban agent: stopped')
    return result
  })

  const { on } = events
  return {
    agentId,
    publicKey: identity.publicKey,
    get state() {
      return state
    },
    get pricing() {
      return handshake.pricing
    },
    get jwt() {
      return handshake.jwt
    },
    on,
    ready(signal) {
      if (link.ready) return Promise.resolve()
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
    heartbeat: telemetry.heartbeat,
    sendMetrics: telemetry.sendMetrics,
    activeTasks: tasks.active,
    async stop() {
      stopController.abort(new Error('agent stopped'))
      return done
    },
    done,
  }
}
