import type { Logger } from '../logger.ts'
import { bytesToBase64 } from './base64.ts'
import type { OrbanAgentEmitter } from './orbanAgentEvents.ts'
import type { CreateOrbanAgentInit, OrbanAgentState, OrbanRegistration } from './orbanAgentTypes.ts'
import type { OrbanConnection } from './orbanConnection.ts'
import { signOrbanChallenge, type OrbanIdentity } from '../identity/orbanIdentity.ts'
import type { OrbanLink } from './orbanLink.ts'
import type { OrbanMessageOf, OrbanPricing } from './orbanMessages.ts'
import type { OrbanTasks } from './orbanTasks.ts'
import type { OrbanTelemetry } from './orbanTelemetry.ts'

export type OrbanHandshakeInit = Pick<CreateOrbanAgentInit, 'registration'> & {
  /** When the agent started (ms): STATE_SYNC's last heartbeat before the first one. */
  startedAt: number
  heartbeatIntervalMs: number
}

export type OrbanHandshakeComponents = {
  identity: OrbanIdentity
  link: OrbanLink
  events: OrbanAgentEmitter
  log: Logger
  setState: (next: OrbanAgentState) => void
  tasks: Pick<OrbanTasks, 'active'>
  telemetry: Pick<OrbanTelemetry, 'heartbeat' | 'lastHeartbeat'>
}

/** Each (re)connect: the Ed25519 challenge, AGENT_REGISTER, and on REGISTER_ACK the session's start. */
export type OrbanHandshake = {
  onChallenge(message: OrbanMessageOf<'AUTH_CHALLENGE'>, connection: OrbanConnection): Promise<void>
  onAuthSuccess(message: OrbanMessageOf<'AUTH_SUCCESS'>, connection: OrbanConnection): Promise<void>
  /** Re-syncs state after a reconnect, sends what waited, heartbeats from now on. */
  onRegisterAck(message: OrbanMessageOf<'REGISTER_ACK'>, connection: OrbanConnection): Promise<void>
  /** The registration sent at the last (re)connect. */
  registration(): Promise<OrbanRegistration | undefined>
  /** Pricing from the last REGISTER_ACK. */
  readonly pricing: OrbanPricing | undefined
  /** The JWT from the last AUTH_SUCCESS. */
  readonly jwt: { token: string; expiresAt: Date } | undefined
}

export function createOrbanHandshake(init: OrbanHandshakeInit, components: OrbanHandshakeComponents): OrbanHandshake {
  const { identity, link, events, log, setState, tasks, telemetry } = components
  const { agentId } = identity
  let currentRegistration: Promise<OrbanRegistration | undefined> = Promise.resolve(undefined)
  let pricing: OrbanPricing | undefined
  let jwt: { token: string; expiresAt: Date } | undefined
  let hadSession = false

  return {
    async onChallenge(message, { ws, close }) {
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
      link.sendOn(ws, 'AUTH_RESPONSE', { agent_id: agentId, signature, public_key: bytesToBase64(identity.publicKey) })
    },
    async onAuthSuccess(message, { ws }) {
      jwt = { token: message.jwt_token, expiresAt: new Date(Date.now() + message.expires_in * 1000) }
      setState('registering')
      currentRegistration = Promise.resolve(typeof init.registration === 'function' ? init.registration() : init.registration)
      const registration = await currentRegistration
      if (!registration) return
      link.sendOn(ws, 'AGENT_REGISTER', { agent_id: agentId, ...registration })
    },
    async onRegisterAck(message, connection) {
      connection.registered()
      link.markReady()
      pricing = message.pricing
      if (hadSession) link.send('STATE_SYNC', { agent_id: agentId, last_heartbeat: telemetry.lastHeartbeat ?? new Date(init.startedAt), active_tasks: tasks.active() })
      hadSession = true
      link.flush(connection.ws)
      setState('ready')
      events.emit('registered', message)
      await telemetry.heartbeat()
      connection.every(init.heartbeatIntervalMs, () => void telemetry.heartbeat())
    },
    registration: () => currentRegistration,
    get pricing() {
      return pricing
    },
    get jwt() {
      return jwt
    },
  }
}
