import type { Logger } from '../logger.ts'
import type { OrbanAgentEmitter } from './orbanAgentEvents.ts'
import type { OrbanConnection } from './orbanConnection.ts'
import type { OrbanHandshake } from './orbanHandshake.ts'
import type { OrbanLink } from './orbanLink.ts'
import type { OrbanMessage, OrbanMessageOf } from './orbanMessages.ts'
import type { OrbanTasks } from './orbanTasks.ts'

export type OrbanDispatchComponents = {
  handshake: Pick<OrbanHandshake, 'onChallenge' | 'onAuthSuccess' | 'onRegisterAck'>
  tasks: Pick<OrbanTasks, 'handle'>
  answerPow: (challenge: OrbanMessageOf<'POW_CHALLENGE'>) => Promise<void>
  link: OrbanLink
  events: OrbanAgentEmitter
  log: Logger
}

/** Routes each frame from the platform to the part of the agent that answers it. */
export function createOrbanDispatcher(components: OrbanDispatchComponents): (message: OrbanMessage, connection: OrbanConnection) => Promise<void> {
  const { handshake, tasks, answerPow, link, events, log } = components
  return async function dispatch(message, connection) {
    switch (message.type) {
      case 'AUTH_CHALLENGE':
        return handshake.onChallenge(message, connection)
      case 'AUTH_SUCCESS':
        return handshake.onAuthSuccess(message, connection)
      case 'REGISTER_ACK':
        return handshake.onRegisterAck(message, connection)
      case 'TASK_ASSIGN':
        if (link.ready) await tasks.handle(message)
        return
      case 'POW_CHALLENGE':
        await answerPow(message)
        return
      case 'EARNINGS_RECORD':
        events.emit('earnings', message)
        return
      case 'PAYOUT_NOTIFICATION':
        events.emit('payout', message)
        return
      case 'ERROR': {
        events.emit('platform-error', message)
        log.warn({ code: message.code, message: message.message, recoverable: message.recoverable }, 'orban agent: platform error')
        if (message.code === 'AUTH_FAILED') connection.stopWith({ reason: 'auth_failed', error: message })
        else if (!message.recoverable) connection.stopWith({ reason: 'fatal_error', error: message })
        // 1000 tells the Oracle this agent leaves (its range moves at once); a reconnect is not a leave.
        if (connection.stopping) connection.close(1000, 'stopping')
        else connection.close(4003, 'reconnecting')
        return
      }
      default:
        log.debug({ type: message.type }, 'orban agent: message not meant for an agent ignored')
    }
  }
}
