import { randomBytes, randomUUID } from 'node:crypto'
import { STATUS_CODES, type IncomingMessage } from 'node:http'
import type { Duplex } from 'node:stream'
import { WebSocketServer, type RawData, type WebSocket } from 'ws'
import { silentLogger, type Logger } from '../../../shared/logger.ts'
import { base64ToBytes, bytesToBase64 } from '../../../shared/orban/base64.ts'
import { agentIdOf, isDerivedAgentId, ORBAN_CHALLENGE_BYTES, verifyOrbanAuth, type OrbanAuthMode } from '../../../shared/identity/orbanIdentity.ts'
import { checkOrbanMeshClaims, OrbanMeshClaimError, type OrbanMeshLimits } from '../../../shared/orban/orbanMeshClaims.ts'
import {
  createOrbanMessage,
  ORBAN_PATH,
  ORBAN_SUBPROTOCOL,
  OrbanMessageError,
  parseOrbanMessage,
  serializeOrbanMessage,
  type OrbanMessage,
  type OrbanMessageOf,
  type OrbanMessageType,
  type OrbanPayload,
  type OrbanPayloadInput,
  type OrbanPricing,
} from '../../../shared/orban/orbanMessages.ts'
import { fromProtobuf } from '../../../shared/orban/orbanProtobuf.ts'
import { verifyProofOfWork } from '../../../shared/orban/proofOfWork.ts'
import { signOrbanJwt } from './orbanJwt.ts'
import type { OrbanEarningsSummary, OrbanStore } from './orbanStore.ts'

/**
 * The platform side of the Orban agent protocol: WebSocket upgrades on `/agent/v1/connect`
 * (subprotocol agent.orban.v1), Ed25519 challenge, JWT, registration with pricing, heartbeats,
 * tasks, metrics, earnings, proofs of work. Every frame is validated; abuse (no subprotocol, bad
 * signature, frames before auth, malformed or oversize frames, floods) is refused, counted and
 * never takes the process or other agents down. Binary frames are read as protobuf `Message`s;
 * the channel itself always writes JSON text.
 */

/** An agent with a registered session (connected, or dropped less than the heartbeat timeout ago). */
export type OrbanConnectedAgent = {
  agentId: string
  /** Base64 of its Ed25519 public key. */
  publicKey: string
  /**
   * How it signed the challenge: ours ("orban-auth-v1" ‖ challenge) or upstream's raw bytes. Only
   * the former may announce a libp2p peer (`registration.mesh`, checked by checkOrbanMeshClaims).
   */
  authMode: OrbanAuthMode
  registration: OrbanPayload<'AGENT_REGISTER'>
  pricing: OrbanPricing
  connectedAt: number
  /** Last frame from it (unix ms). */
  lastSeenAt: number
  /** The last HEARTBEAT, if any. */
  heartbeat: OrbanPayload<'HEARTBEAT'> | undefined
  /** No frame within the heartbeat timeout (onSilent was called); a later frame clears it. */
  stale: boolean
  /** Task ids accepted and not yet finished. */
  tasks: string[]
  remoteAddress: string | undefined
}

/** Called by the channel; may be async; a throw is logged, never propagated. */
export type OrbanChannelHooks = {
  /** After REGISTER_ACK went out (also on every re-registration after a reconnect). */
  onRegister?(agent: OrbanConnectedAgent): unknown
  onHeartbeat?(agent: OrbanConnectedAgent, heartbeat: OrbanMessageOf<'HEARTBEAT'>): unknown
  /** No frame from the agent for `heartbeatTimeoutMs` (connected but quiet, or gone and not back). */
  onSilent?(agentId: string, info: { lastSeenAt: number; connected: boolean }): unknown
  /** Its socket closed (it may come back before it is declared silent). */
  onDisconnect?(agentId: string, info: { code: number; reason: string }): unknown
  onTaskProgress?(agentId: string, progress: OrbanMessageOf<'TASK_PROGRESS'>): unknown
  onTaskComplete?(agentId: string, complete: OrbanMessageOf<'TASK_COMPLETE'>): unknown
  onTaskFailed?(agentId: string, failed: OrbanMessageOf<'TASK_FAILED'>): unknown
  /** After a reconnect: what the agent still runs (tasks unknown to the channel are adopted). */
  onStateSync?(agentId: string, sync: OrbanMessageOf<'STATE_SYNC'>): unknown
  /** A METRICS_BATCH, after it was persisted. */
  onMetrics?(agentId: string, batch: OrbanMessageOf<'METRICS_BATCH'>): unknown
  /** An ERROR frame the agent sent. */
  onAgentError?(agentId: string, error: OrbanMessageOf<'ERROR'>): unknown
  /**
   * The agent's socket answered a WebSocket ping: it is alive even if it sends no HEARTBEAT
   * (upstream agents leave the heartbeat loop a TODO; such an agent is `stale`, yet connected).
   */
  onAlive?(agentId: string): unknown
}

export type OrbanChannelLimits = {
  /** Largest frame accepted (bigger ones close the socket with 1009). @default 262144 */
  maxFrameBytes?: number
  /** ERROR frames a connection may earn before it is closed. @default 5 */
  maxErrors?: number
  /** Sustained frames per second per connection (token bucket refill). @default 20 */
  messagesPerSecond?: number
  /** Bucket size: frames allowed at once. @default 60 */
  burst?: number
  /** From the upgrade to AGENT_REGISTER. @default 15000 */
  handshakeTimeoutMs?: number
  /** Open sockets at once. @default 10000 */
  maxConnections?: number
  /** Open sockets at once from one IP address (one /64 for IPv6). @default 32 */
  maxConnectionsPerIp?: number
  /** Sockets that have not authenticated yet, at once (upgrades beyond get 503). @default 256 */
  maxUnauthenticated?: number
  /** From the upgrade to a valid AUTH_RESPONSE. @default 5000 */
  authTimeoutMs?: number
  /** Largest frame read before authentication (an AUTH_RESPONSE is ~300 bytes). @default 4096 */
  maxPreAuthFrameBytes?: number
  /** Bounds on what an agent may claim about its libp2p node. @default ORBAN_MESH_LIMITS */
  mesh?: Partial<OrbanMeshLimits>
}

export type CreateOrbanChannelInit = {
  store: OrbanStore
  logger?: Logger
  hooks?: OrbanChannelHooks
  limits?: OrbanChannelLimits
  /** HMAC key of the JWTs. @default 32 random bytes (tokens do not outlive the process) */
  jwtSecret?: Uint8Array | string
  /** @default 86400 */
  jwtTtlSec?: number
  /** Silence after which an agent is stale. @default 90000 (three missed heartbeats) */
  heartbeatTimeoutMs?: number
  /** Default difficulty of challengePow (bits). @default 16 */
  powDifficulty?: number
  /** Time an agent has to answer a proof of work. @default 30000 */
  powTimeoutMs?: number
  /** Time an agent has to accept or reject a task. @default 30000 */
  acceptTimeoutMs?: number
  /**
   * WebSocket pings to every registered socket: a pong is liveness (what keeps an agent that never
   * sends HEARTBEAT), and a socket that answers no ping for two intervals is closed as dead.
   * @default heartbeatTimeoutMs / 3
   */
  pingIntervalMs?: number
  /** Pricing of REGISTER_ACK. @default orbanPricing(registration) */
  pricing?: (registration: OrbanPayload<'AGENT_REGISTER'>) => OrbanPricing
  signal?: AbortSignal
}

export type OrbanAssignResult = 'accepted' | { rejected: string; details?: string }

export type OrbanChannelStats = {
  /** Sockets accepted since start. */
  connections: number
  /** Sockets open now. */
  open: number
  /** Upgrades refused for a missing or wrong subprotocol. */
  badSubprotocol: number
  /** Upgrades on another path. */
  notFound: number
  /** Upgrades refused because the channel is full or closed, or too many are unauthenticated. */
  overloaded: number
  /** Upgrades refused because their IP address has maxConnectionsPerIp sockets open. */
  perIpRefused: number
  /** Upgrade requests that could not be handled at all (answered 400). */
  badUpgrades: number
  /** Registrations refused for a mesh claim the key does not back (peer id, agent id). */
  meshRefused: number
  /** Announced multiaddrs left out (wrong peer, bad address, too many or too long). */
  multiaddrsDropped: number
  authFailures: number
  /** Frames other than AUTH_RESPONSE before authentication. */
  unauthenticated: number
  /** Frames that were not JSON (or not protobuf). */
  malformed: number
  /** Frames that broke the envelope or a payload schema, or came out of turn. */
  invalid: number
  /** Frames over maxFrameBytes (or over maxPreAuthFrameBytes before authentication). */
  oversize: number
  rateLimited: number
  /** Connections closed because they reached maxErrors. */
  closedForErrors: number
  errorsSent: number
  messagesIn: number
  messagesOut: number
  binaryFrames: number
  /** Reports about tasks the channel does not know for that agent. */
  unknownTasks: number
  handshakeTimeouts: number
  powVerified: number
  powRefused: number
}

export type OrbanChannel = {
  /** For a node:http server's 'upgrade' event; other paths get 404. */
  handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void
  /** Whether an upgrade request is for this channel (to route upgrades between several handlers). */
  matches(req: IncomingMessage): boolean
  /** Sends TASK_ASSIGN and waits for TASK_ACCEPT or TASK_REJECT (or a timeout, or the agent leaving). */
  assignTask(agentId: string, task: OrbanPayloadInput<'TASK_ASSIGN'>): Promise<OrbanAssignResult>
  /** Persists the record, then sends EARNINGS_RECORD if the agent is connected. */
  sendEarnings(agentId: string, record: OrbanPayloadInput<'EARNINGS_RECORD'>): Promise<{ delivered: boolean }>
  sendPayout(agentId: string, notification: OrbanPayloadInput<'PAYOUT_NOTIFICATION'>): boolean
  /** Total, today, pending and history of an agent's earnings (from the store). */
  earnings(agentId: string): Promise<OrbanEarningsSummary>
  /** Sends POW_CHALLENGE; true when a counter meeting the difficulty came back in time. Throws OrbanAgentUnavailableError when not connected. */
  challengePow(agentId: string, difficulty?: number): Promise<boolean>
  /** Registered agents with an open socket. */
  agents(): OrbanConnectedAgent[]
  /** Drops an agent's socket abruptly (as a network failure would); false if it had none. */
  disconnect(agentId: string): boolean
  stats(): OrbanChannelStats
  close(): Promise<void>
}

export class OrbanAgentUnavailableError extends Error {
  readonly agentId: string
  constructor(agentId: string) {
    super(`Orban agent ${agentId} is not connected`)
    this.name = 'OrbanAgentUnavailableError'
    this.agentId = agentId
  }
}

/** Base hourly rate of the default pricing, USD. */
export const ORBAN_BASE_RATE_USD_PER_HOUR = 0.5

const round = (value: number, digits: number) => Math.round(value * 10 ** digits) / 10 ** digits

/**
 * Default REGISTER_ACK pricing: base 0.50 USD/h; gpu_multiplier = total VRAM of the agent's GPUs
 * in GB / 10, at least 0.1 (a 24 GB card: 2.4×, CPU only: 0.1×), rounded to 2 decimals;
 * effective_rate = base × multiplier, rounded to 4.
 */
export function orbanPricing(registration: OrbanPayload<'AGENT_REGISTER'>): OrbanPricing {
  const vram = registration.hardware.gpus.reduce((sum, g) => sum + g.vram_gb, 0)
  const gpu_multiplier = Math.max(0.1, round(vram / 10, 2))
  return { base_rate_usd_per_hour: ORBAN_BASE_RATE_USD_PER_HOUR, gpu_multiplier, effective_rate: round(ORBAN_BASE_RATE_USD_PER_HOUR * gpu_multiplier, 4) }
}

type Phase = 'challenged' | 'authenticated' | 'registered' | 'closed'

type Connection = {
  id: number
  ws: WebSocket
  /** The upgraded TCP socket (what the per-IP and unauthenticated slots are keyed by). */
  socket: Duplex
  remoteAddress: string | undefined
  phase: Phase
  challenge: Uint8Array
  agentId?: string
  publicKey?: string
  publicKeyBytes?: Uint8Array
  authMode?: OrbanAuthMode
  errors: number
  tokens: number
  refilledAt: number
  queue: Promise<void>
  handshakeTimer: ReturnType<typeof setTimeout> | undefined
  /** Last pong (performance.now()); a ping unanswered for two intervals closes the socket. */
  pongAt: number
}

/** What the channel keeps of a registered agent: the public view, with its live task set and socket. */
type Session = Omit<OrbanConnectedAgent, 'tasks' | 'remoteAddress'> & {
  tasks: Set<string>
  conn: Connection | undefined
  /** What the agent was found not to send (logged once each). */
  missing: Set<'HEARTBEAT' | 'TASK_ACCEPT'>
}

type PendingAssign = { agentId: string; resolve: (r: OrbanAssignResult) => void; timer: ReturnType<typeof setTimeout> }
type PendingPow = {
  agentId: string
  nonce: Uint8Array
  difficulty: number
  issuedAt: number
  deadline: number
  resolve: (verified: boolean) => void
  timer: ReturnType<typeof setTimeout>
}

// What only the platform sends: an agent sending one of these is out of turn.
const PLATFORM_TYPES = new Set<OrbanMessageType>(['AUTH_CHALLENGE', 'AUTH_SUCCESS', 'REGISTER_ACK', 'TASK_ASSIGN', 'EARNINGS_RECORD', 'PAYOUT_NOTIFICATION', 'POW_CHALLENGE'])
const AGENT_ID = /^[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}$/
/**
 * Plumise nodes are keyed by their 0x wallet address in the same Oracle: an Orban agent id may
 * never take that form, so the two id spaces cannot meet (the core refuses a kind change too).
 */
const WALLET_LIKE = /^0x/i

/** The key per-IP caps count by: the address, or its /64 for IPv6 (one host holds a whole /64). */
export function ipBucket(address: string | undefined): string {
  if (!address) return 'unknown'
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address)
  if (mapped) return mapped[1]!
  if (!address.includes(':')) return address
  const [head = '', tail = ''] = address.toLowerCase().split('::')
  const left = head ? head.split(':') : []
  const right = tail ? tail.split(':') : []
  const groups = address.includes('::') ? [...left, ...Array(Math.max(0, 8 - left.length - right.length)).fill('0'), ...right] : left
  return groups.slice(0, 4).map((g) => g.replace(/^0+(?=.)/, '')).join(':') + '::/64'
}

export function createOrbanChannel(init: CreateOrbanChannelInit): OrbanChannel {
  const { store } = init
  const log = init.logger ?? silentLogger
  const hooks = init.hooks ?? {}
  const maxFrameBytes = init.limits?.maxFrameBytes ?? 256 * 1024
  const maxErrors = init.limits?.maxErrors ?? 5
  const rate = init.limits?.messagesPerSecond ?? 20
  const burst = init.limits?.burst ?? 60
  const handshakeTimeoutMs = init.limits?.handshakeTimeoutMs ?? 15_000
  const maxConnections = init.limits?.maxConnections ?? 10_000
  const maxConnectionsPerIp = init.limits?.maxConnectionsPerIp ?? 32
  const maxUnauthenticated = init.limits?.maxUnauthenticated ?? 256
  const authTimeoutMs = init.limits?.authTimeoutMs ?? 5000
  const maxPreAuthFrameBytes = init.limits?.maxPreAuthFrameBytes ?? 4096
  const jwtSecret = init.jwtSecret ?? randomBytes(32)
  const jwtTtlSec = init.jwtTtlSec ?? 86_400
  const heartbeatTimeoutMs = init.heartbeatTimeoutMs ?? 90_000
  const powDifficulty = init.powDifficulty ?? 16
  const powTimeoutMs = init.powTimeoutMs ?? 30_000
  const acceptTimeoutMs = init.acceptTimeoutMs ?? 30_000
  const pingIntervalMs = init.pingIntervalMs ?? Math.max(50, Math.floor(heartbeatTimeoutMs / 3))
  const pricingOf = init.pricing ?? orbanPricing

  const counters: OrbanChannelStats = {
    connections: 0,
    open: 0,
    badSubprotocol: 0,
    notFound: 0,
    overloaded: 0,
    perIpRefused: 0,
    badUpgrades: 0,
    meshRefused: 0,
    multiaddrsDropped: 0,
    authFailures: 0,
    unauthenticated: 0,
    malformed: 0,
    invalid: 0,
    oversize: 0,
    rateLimited: 0,
    closedForErrors: 0,
    errorsSent: 0,
    messagesIn: 0,
    messagesOut: 0,
    binaryFrames: 0,
    unknownTasks: 0,
    handshakeTimeouts: 0,
    powVerified: 0,
    powRefused: 0,
  }

  const wss = new WebSocketServer({
    noServer: true,
    maxPayload: maxFrameBytes,
    perMessageDeflate: false,
    handleProtocols: (protocols) => (protocols.has(ORBAN_SUBPROTOCOL) ? ORBAN_SUBPROTOCOL : false),
  })
  const connections = new Set<Connection>()
  const sessions = new Map<string, Session>()
  const taskOwners = new Map<string, string>()
  const pendingAssigns = new Map<string, PendingAssign>()
  const pendingPows = new Map<string, PendingPow>()
  let nextId = 1
  let closed = false
  /** Open (or opening) sockets per ipBucket, and those not yet authenticated: counted from the upgrade to the socket's close. */
  const perIp = new Map<string, number>()
  let unauthenticatedOpen = 0
  /** Releases a socket's unauthenticated slot once (on authentication or close). */
  const unauthenticatedSlots = new WeakMap<Duplex, () => void>()

  function callHook<K extends keyof OrbanChannelHooks>(name: K, ...args: Parameters<NonNullable<OrbanChannelHooks[K]>>) {
    const hook = hooks[name] as ((...a: unknown[]) => unknown) | undefined
    if (!hook) return
    try {
      void Promise.resolve(hook(...args)).catch((e: unknown) => log.error({ hook: name, err: e }, 'orban hook failed'))
    } catch (e) {
      log.error({ hook: name, err: e }, 'orban hook failed')
    }
  }

  function view(s: Session): OrbanConnectedAgent {
    return {
      agentId: s.agentId,
      publicKey: s.publicKey,
      authMode: s.authMode,
      registration: s.registration,
      pricing: s.pricing,
      connectedAt: s.connectedAt,
      lastSeenAt: s.lastSeenAt,
      heartbeat: s.heartbeat,
      stale: s.stale,
      tasks: [...s.tasks],
      remoteAddress: s.conn?.remoteAddress,
    }
  }

  function sendMessage(conn: Connection, message: OrbanMessage): boolean {
    if (conn.ws.readyState !== conn.ws.OPEN) return false
    conn.ws.send(serializeOrbanMessage(message))
    counters.messagesOut++
    return true
  }

  function send<K extends OrbanMessageType>(conn: Connection, type: K, payload: OrbanPayloadInput<K>): boolean {
    return sendMessage(conn, createOrbanMessage(type, payload) as unknown as OrbanMessage)
  }

  function closeConn(conn: Connection, code: number, reason: string) {
    if (conn.phase === 'closed') return
    conn.phase = 'closed'
    try {
      conn.ws.close(code, reason)
    } catch {
      conn.ws.terminate()
    }
  }

  /**
   * Sends ERROR; closes the socket when told to, when the error is not recoverable (the agent
   * should stop) or when the connection used up its errors. `recoverable` tells the agent whether
   * to come back.
   */
  function refuse(conn: Connection, code: string, message: string, recoverable: boolean, closeAnyway = false) {
    conn.errors++
    counters.errorsSent++
    log.warn({ conn: conn.id, agentId: conn.agentId, code, message }, 'orban: refused a frame')
    send(conn, 'ERROR', { code, message, context: null, recoverable })
    if (!recoverable || closeAnyway) closeConn(conn, 1008, code)
    else if (conn.errors >= maxErrors) {
      counters.closedForErrors++
      closeConn(conn, 1008, 'too many errors')
    }
  }

  function takeToken(conn: Connection): boolean {
    const now = performance.now()
    conn.tokens = Math.min(burst, conn.tokens + ((now - conn.refilledAt) / 1000) * rate)
    conn.refilledAt = now
    if (conn.tokens < 1) return false
    conn.tokens -= 1
    return true
  }

  function onConnection(ws: WebSocket, req: IncomingMessage) {
    const conn: Connection = {
      id: nextId++,
      ws,
      socket: req.socket,
      remoteAddress: req.socket.remoteAddress,
      phase: 'challenged',
      challenge: randomBytes(ORBAN_CHALLENGE_BYTES),
      errors: 0,
      tokens: burst,
      refilledAt: performance.now(),
      queue: Promise.resolve(),
      handshakeTimer: undefined,
      pongAt: performance.now(),
    }
    ws.on('pong', () => onPong(conn))
    connections.add(conn)
    counters.connections++
    counters.open++
    log.debug({ conn: conn.id, remote: conn.remoteAddress }, 'orban: agent connected')
    conn.handshakeTimer = setTimeout(() => {
      if (conn.phase === 'registered' || conn.phase === 'closed') return
      counters.handshakeTimeouts++
      refuse(conn, 'TIMEOUT', 'authenticate and register sooner', true, true)
    }, handshakeTimeoutMs)
    // A socket that never authenticates holds one of few unauthenticated slots: it goes sooner.
    const authTimer = setTimeout(() => {
      if (conn.phase !== 'challenged') return
      counters.handshakeTimeouts++
      refuse(conn, 'TIMEOUT', `authenticate within ${authTimeoutMs} ms`, true, true)
    }, authTimeoutMs)
    ws.once('close', () => clearTimeout(authTimer))

    ws.on('message', (data: RawData, isBinary: boolean) => onFrame(conn, data, isBinary))
    ws.on('error', (e: Error & { code?: string }) => {
      if (e.code === 'WS_ERR_UNSUPPORTED_MESSAGE_LENGTH') counters.oversize++
      else counters.invalid++
      log.warn({ conn: conn.id, agentId: conn.agentId, code: e.code, err: e.message }, 'orban: socket error')
    })
    ws.on('close', (code: number, reason: Buffer) => onClose(conn, code, reason.toString()))
    send(conn, 'AUTH_CHALLENGE', { challenge: bytesToBase64(conn.challenge) })
  }

  function onFrame(conn: Connection, data: RawData, isBinary: boolean) {
    if (conn.phase === 'closed') return
    counters.messagesIn++
    if (!takeToken(conn)) {
      counters.rateLimited++
      refuse(conn, 'RATE_LIMITED', `more than ${rate} frames per second`, true, true)
      return
    }
    const bytes = Array.isArray(data) ? Buffer.concat(data) : Buffer.from(data as ArrayBuffer)
    const preAuth = conn.phase === 'challenged'
    // Before authentication only a small AUTH_RESPONSE is read: no other payload is validated
    // (no work for a stranger beyond one bounded frame), and a bigger frame is refused unread.
    if (preAuth && bytes.length > maxPreAuthFrameBytes) {
      counters.oversize++
      counters.unauthenticated++
      refuse(conn, 'FRAME_TOO_LARGE', `frames before authentication are at most ${maxPreAuthFrameBytes} bytes`, false)
      return
    }
    const options = preAuth ? { only: 'AUTH_RESPONSE' as const } : {}
    let message: OrbanMessage
    try {
      if (isBinary) {
        counters.binaryFrames++
        message = fromProtobuf(bytes, options)
      } else message = parseOrbanMessage(bytes.toString('utf8'), options)
    } catch (e) {
      const error = e instanceof OrbanMessageError ? e : new OrbanMessageError('MALFORMED_JSON', String(e))
      if (preAuth) counters.unauthenticated++
      // Another message type before authentication: said as such, its payload never looked at.
      if (preAuth && error.code === 'UNEXPECTED_TYPE') return refuse(conn, 'UNAUTHENTICATED', `${error.messageType ?? 'a message'} before authentication`, false)
      if (error.code === 'MALFORMED_JSON') counters.malformed++
      else counters.invalid++
      // Before authentication nothing but a valid AUTH_RESPONSE is tolerated.
      refuse(conn, error.code, error.message, !preAuth)
      return
    }
    conn.queue = conn.queue
      .then(() => (conn.phase === 'closed' ? undefined : dispatch(conn, message)))
      .catch((e: unknown) => {
        log.error({ conn: conn.id, agentId: conn.agentId, type: message.type, err: e }, 'orban: handling a frame failed')
        if (conn.phase !== 'closed') refuse(conn, 'INTERNAL', 'the platform could not handle this frame', true)
      })
  }

  async function dispatch(conn: Connection, message: OrbanMessage): Promise<void> {
    if (conn.phase === 'challenged') {
      if (message.type !== 'AUTH_RESPONSE') {
        counters.unauthenticated++
        refuse(conn, 'UNAUTHENTICATED', `${message.type} before authentication`, false)
        return
      }
      return authenticate(conn, message)
    }
    const agentId = conn.agentId!
    if (PLATFORM_TYPES.has(message.type) || message.type === 'AUTH_RESPONSE') {
      counters.invalid++
      refuse(conn, 'UNEXPECTED_MESSAGE', `${message.type} is not for the platform now`, true)
      return
    }
    if ('agent_id' in message && message.agent_id !== agentId) {
      counters.invalid++
      refuse(conn, 'AGENT_MISMATCH', `agent_id ${message.agent_id} is not the authenticated ${agentId}`, true)
      return
    }
    if (message.type === 'AGENT_REGISTER') return register(conn, message)
    if (conn.phase !== 'registered') {
      counters.invalid++
      refuse(conn, 'NOT_REGISTERED', `${message.type} before AGENT_REGISTER`, true)
      return
    }
    const session = sessions.get(agentId)
    if (!session || session.conn !== conn) return
    const now = Date.now()
    session.lastSeenAt = now
    if (session.stale) {
      session.stale = false
      log.info({ agentId }, 'orban: silent agent is back')
    }
    switch (message.type) {
      case 'HEARTBEAT':
        session.heartbeat = message
        await store.touchAgent(agentId, now)
        callHook('onHeartbeat', view(session), message)
        return
      case 'METRICS_BATCH':
        await store.addMetrics(agentId, message, now)
        callHook('onMetrics', agentId, message)
        return
      case 'TASK_ACCEPT':
      case 'TASK_REJECT': {
        const pending = pendingAssigns.get(message.task_id)
        if (pending?.agentId === agentId) {
          pendingAssigns.delete(message.task_id)
          clearTimeout(pending.timer)
          if (message.type === 'TASK_ACCEPT') {
            taskOwners.set(message.task_id, agentId)
            session.tasks.add(message.task_id)
            pending.resolve('accepted')
          } else pending.resolve({ rejected: message.reason, details: message.details })
        } else if (!(message.type === 'TASK_ACCEPT' && taskOwners.get(message.task_id) === agentId)) unknownTask(agentId, message)
        return
      }
      case 'TASK_PROGRESS':
        if (ownTask(agentId, message)) callHook('onTaskProgress', agentId, message)
        return
      case 'TASK_COMPLETE':
      case 'TASK_FAILED':
        if (!ownTask(agentId, message)) return
        taskOwners.delete(message.task_id)
        session.tasks.delete(message.task_id)
        if (message.type === 'TASK_COMPLETE') callHook('onTaskComplete', agentId, message)
        else callHook('onTaskFailed', agentId, message)
        return
      case 'STATE_SYNC':
        for (const task of message.active_tasks) {
          const owner = taskOwners.get(task.task_id)
          if (owner === undefined || owner === agentId) {
            taskOwners.set(task.task_id, agentId)
            session.tasks.add(task.task_id)
          } else unknownTask(agentId, { type: 'STATE_SYNC', task_id: task.task_id })
        }
        callHook('onStateSync', agentId, message)
        return
      case 'POW_RESPONSE':
        return powAnswered(agentId, message)
      case 'ERROR': {
        log.warn({ agentId, code: message.code, message: message.message }, 'orban: agent reported an error')
        // An agent declining a proof of work (too hard, missed its deadline) has answered: refused now, not at the timeout.
        const context = message.context
        const challengeId = context && typeof context === 'object' && !Array.isArray(context) ? context.challenge_id : undefined
        if (typeof challengeId === 'string' && pendingPows.get(challengeId)?.agentId === agentId) await settlePow(challengeId, false, null)
        callHook('onAgentError', agentId, message)
        return
      }
    }
  }

  function ownTask(agentId: string, message: { type: string; task_id: string }): boolean {
    if (taskOwners.get(message.task_id) === agentId) return true
    // Upstream agents never send TASK_ACCEPT (a TODO there): a report on a task offered to this
    // agent and not refused is its acceptance.
    const pending = pendingAssigns.get(message.task_id)
    const session = sessions.get(agentId)
    if (pending?.agentId === agentId && session) {
      pendingAssigns.delete(message.task_id)
      clearTimeout(pending.timer)
      taskOwners.set(message.task_id, agentId)
      session.tasks.add(message.task_id)
      if (!session.missing.has('TASK_ACCEPT')) {
        session.missing.add('TASK_ACCEPT')
        log.warn({ agentId, taskId: message.task_id, type: message.type }, `orban: agent sends no TASK_ACCEPT; its ${message.type} is taken as accepting the task`)
      }
      pending.resolve('accepted')
      return true
    }
    unknownTask(agentId, message)
    return false
  }

  function onPong(conn: Connection) {
    conn.pongAt = performance.now()
    if (conn.phase !== 'registered' || !conn.agentId) return
    const session = sessions.get(conn.agentId)
    if (!session || session.conn !== conn) return
    // `stale` and lastSeenAt stay about frames (what the agent says); a pong only says the socket is alive.
    // An agent registered for a heartbeat timeout that never sent HEARTBEAT: said once, then kept by its pongs.
    if (!session.heartbeat && !session.missing.has('HEARTBEAT') && Date.now() - session.connectedAt > heartbeatTimeoutMs) {
      session.missing.add('HEARTBEAT')
      log.warn({ agentId: session.agentId }, 'orban: agent sends no HEARTBEAT; its liveness is its socket answering WebSocket pings')
    }
    callHook('onAlive', session.agentId)
  }

  /** Pings every registered socket; one that answered none for two intervals is dead: closed. */
  function pingAll() {
    const now = performance.now()
    for (const conn of connections) {
      if (conn.phase !== 'registered') continue
      if (now - conn.pongAt > 2 * pingIntervalMs + 1000) {
        log.warn({ conn: conn.id, agentId: conn.agentId }, 'orban: socket answers no pings; closed as dead')
        conn.ws.terminate()
        continue
      }
      try {
        conn.ws.ping()
      } catch {
        // Closing already.
      }
    }
  }

  function unknownTask(agentId: string, message: { type: string; task_id: string }) {
    // Not an ERROR frame: an agent reconnects on errors, and a late report after a timeout is no abuse.
    counters.unknownTasks++
    log.warn({ agentId, taskId: message.task_id, type: message.type }, 'orban: report about a task this agent does not hold ignored')
  }

  async function authenticate(conn: Connection, message: OrbanMessageOf<'AUTH_RESPONSE'>) {
    const fail = (reason: string) => {
      counters.authFailures++
      refuse(conn, 'AUTH_FAILED', reason, false)
    }
    const { agent_id: agentId } = message
    if (!AGENT_ID.test(agentId)) return fail('agent_id has characters or a length that are not allowed')
    let publicKey: Uint8Array
    let signature: Uint8Array
    try {
      publicKey = base64ToBytes(message.public_key)
      signature = base64ToBytes(message.signature)
    } catch {
      return fail('public_key and signature must be base64')
    }
    if (WALLET_LIKE.test(agentId)) return fail('agent_id may not start with 0x (wallet addresses name Plumise nodes)')
    if (publicKey.length !== 32 || signature.length !== 64) return fail('public_key must be 32 bytes and signature 64')
    // Ours sign "orban-auth-v1" ‖ challenge; upstream agents the raw challenge (accepted, but such
    // an agent may announce no libp2p peer: see register).
    const authMode = await verifyOrbanAuth(conn.challenge, signature, publicKey)
    if (!authMode) return fail('the signature does not verify over the challenge')
    if (isDerivedAgentId(agentId) && agentId !== agentIdOf(publicKey)) return fail('agent_id is not the one this public key implies')
    const keyBase64 = bytesToBase64(publicKey)
    const bound = await store.bindAgentKey(agentId, keyBase64, Date.now())
    if (bound !== keyBase64) return fail('agent_id belongs to another key')
    if (conn.phase !== 'challenged') return
    conn.phase = 'authenticated'
    conn.agentId = agentId
    conn.publicKey = keyBase64
    conn.publicKeyBytes = publicKey
    conn.authMode = authMode
    unauthenticatedSlots.get(conn.socket)?.()
    send(conn, 'AUTH_SUCCESS', { jwt_token: signOrbanJwt({ sub: agentId, pk: keyBase64 }, jwtSecret, jwtTtlSec), expires_in: jwtTtlSec })
    log.info({ conn: conn.id, agentId }, 'orban: agent authenticated')
  }

  async function register(conn: Connection, message: OrbanMessageOf<'AGENT_REGISTER'>) {
    const agentId = conn.agentId!
    const { message_id: _id, timestamp: _ts, type: _type, ...registration } = message
    if (registration.mesh) {
      try {
        const checked = checkOrbanMeshClaims({
          mesh: registration.mesh,
          agentId,
          publicKey: conn.publicKeyBytes!,
          authMode: conn.authMode!,
          hardware: registration.hardware,
          limits: init.limits?.mesh,
        })
        if (checked.dropped.length) {
          counters.multiaddrsDropped += checked.dropped.length
          log.warn({ agentId, dropped: checked.dropped.slice(0, 4), count: checked.dropped.length }, 'orban: announced multiaddrs left out')
        }
        registration.mesh = checked.mesh
      } catch (e) {
        if (!(e instanceof OrbanMeshClaimError)) throw e
        counters.meshRefused++
        return refuse(conn, e.code, e.message, false)
      }
    }
    const pricing = pricingOf(registration)
    const now = Date.now()
    await store.saveRegistration(agentId, registration, pricing, now)
    if (conn.phase === 'closed') return
    clearTimeout(conn.handshakeTimer)
    let session = sessions.get(agentId)
    const previous = session?.conn
    if (previous && previous !== conn) {
      log.info({ agentId, old: previous.id, new: conn.id }, 'orban: a newer connection replaces the old one')
      session!.conn = undefined
      closeConn(previous, 4000, 'replaced by a newer connection')
    }
    if (session) Object.assign(session, { registration, pricing, publicKey: conn.publicKey!, authMode: conn.authMode!, conn, lastSeenAt: now, stale: false, connectedAt: previous === conn ? session.connectedAt : now })
    else {
      session = { agentId, publicKey: conn.publicKey!, authMode: conn.authMode!, registration, pricing, connectedAt: now, lastSeenAt: now, heartbeat: undefined, stale: false, tasks: new Set(), conn, missing: new Set() }
      sessions.set(agentId, session)
    }
    conn.phase = 'registered'
    conn.pongAt = performance.now()
    send(conn, 'REGISTER_ACK', { agent_id: agentId, status: 'active', pricing })
    log.info({ agentId, gpus: registration.hardware.gpus.length, pricing }, 'orban: agent registered')
    callHook('onRegister', view(session))
  }

  function onClose(conn: Connection, code: number, reason: string) {
    conn.phase = 'closed'
    clearTimeout(conn.handshakeTimer)
    connections.delete(conn)
    counters.open--
    const agentId = conn.agentId
    if (!agentId) return
    const session = sessions.get(agentId)
    if (!session || session.conn !== conn) return
    session.conn = undefined
    log.info({ agentId, code, reason }, 'orban: agent disconnected')
    for (const [taskId, pending] of pendingAssigns) {
      if (pending.agentId !== agentId) continue
      pendingAssigns.delete(taskId)
      clearTimeout(pending.timer)
      pending.resolve({ rejected: 'disconnected' })
    }
    for (const [challengeId, pending] of pendingPows) if (pending.agentId === agentId) void settlePow(challengeId, false, null)
    callHook('onDisconnect', agentId, { code, reason })
  }

  async function settlePow(challengeId: string, verified: boolean, computationTimeMs: number | null) {
    const pending = pendingPows.get(challengeId)
    if (!pending) return
    pendingPows.delete(challengeId)
    clearTimeout(pending.timer)
    if (verified) counters.powVerified++
    else counters.powRefused++
    try {
      await store.putPow({
        challengeId,
        agentId: pending.agentId,
        difficulty: pending.difficulty,
        verified,
        computationTimeMs,
        issuedAt: pending.issuedAt,
        answeredAt: computationTimeMs === null ? null : Date.now(),
      })
    } catch (e) {
      log.error({ challengeId, err: e }, 'orban: storing a proof-of-work result failed')
    }
    pending.resolve(verified)
  }

  async function powAnswered(agentId: string, message: OrbanMessageOf<'POW_RESPONSE'>) {
    const pending = pendingPows.get(message.challenge_id)
    if (!pending || pending.agentId !== agentId) {
      log.warn({ agentId, challengeId: message.challenge_id }, 'orban: answer to no open proof-of-work challenge ignored')
      return
    }
    const verified =
      message.counter !== undefined &&
      Date.now() <= pending.deadline &&
      verifyProofOfWork({ nonce: pending.nonce, difficulty: pending.difficulty, counter: message.counter, response: message.response })
    log.info({ agentId, challengeId: message.challenge_id, verified, ms: message.computation_time_ms }, 'orban: proof of work answered')
    await settlePow(message.challenge_id, verified, message.computation_time_ms)
  }

  function checkSilence() {
    const now = Date.now()
    for (const session of sessions.values()) {
      if (session.stale || now - session.lastSeenAt <= heartbeatTimeoutMs) continue
      session.stale = true
      const connected = session.conn !== undefined
      log.warn({ agentId: session.agentId, lastSeenAt: session.lastSeenAt, connected }, 'orban: agent went silent')
      // A gone agent is forgotten (its tasks too); a quiet one stays, marked stale.
      if (!connected) {
        sessions.delete(session.agentId)
        for (const taskId of session.tasks) if (taskOwners.get(taskId) === session.agentId) taskOwners.delete(taskId)
      }
      callHook('onSilent', session.agentId, { lastSeenAt: session.lastSeenAt, connected })
    }
  }
  const watchdog = setInterval(checkSilence, Math.max(10, Math.min(5000, heartbeatTimeoutMs / 4)))
  watchdog.unref()
  const pinger = setInterval(pingAll, pingIntervalMs)
  pinger.unref()

  function rejectUpgrade(socket: Duplex, status: number, message: string, headers: Record<string, string> = {}) {
    const body = message + '\n'
    const head = [
      `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? ''}`,
      'Connection: close',
      'Content-Type: text/plain; charset=utf-8',
      `Content-Length: ${Buffer.byteLength(body)}`,
      ...Object.entries(headers).map(([k, v]) => `${k}: ${v}`),
    ]
    socket.once('finish', () => socket.destroy())
    socket.end(head.join('\r\n') + '\r\n\r\n' + body)
  }

  function matches(req: IncomingMessage): boolean {
    try {
      return new URL(req.url ?? '/', 'http://localhost').pathname === ORBAN_PATH
    } catch {
      return false
    }
  }

  /**
   * Never throws: whatever goes wrong with one upgrade request is a 4xx/5xx answer and a log line.
   * Caps: open sockets in all, per IP (per /64 for IPv6), and not yet authenticated; each slot is
   * taken here and given back when the TCP socket closes, whatever path it took.
   */
  function handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer) {
    try {
      upgrade(req, socket, head)
    } catch (e) {
      counters.badUpgrades++
      log.warn({ remote: req.socket?.remoteAddress, err: e instanceof Error ? e.message : String(e) }, 'orban: upgrade request could not be handled')
      try {
        if (socket.writable) rejectUpgrade(socket, 400, 'bad upgrade request')
        else socket.destroy()
      } catch {
        socket.destroy()
      }
    }
  }

  function upgrade(req: IncomingMessage, socket: Duplex, head: Buffer) {
    socket.on('error', (e) => log.debug({ err: e.message }, 'orban: upgrade socket error'))
    if (!matches(req)) {
      counters.notFound++
      return rejectUpgrade(socket, 404, `no WebSocket endpoint here; agents connect to ${ORBAN_PATH}`)
    }
    const offered = String(req.headers['sec-websocket-protocol'] ?? '')
      .split(',')
      .map((p) => p.trim())
    if (!offered.includes(ORBAN_SUBPROTOCOL)) {
      counters.badSubprotocol++
      log.warn({ remote: req.socket.remoteAddress, offered: String(req.headers['sec-websocket-protocol'] ?? '').slice(0, 200) }, 'orban: upgrade without the agent subprotocol refused')
      return rejectUpgrade(socket, 426, `the WebSocket subprotocol must be ${ORBAN_SUBPROTOCOL}`, { 'Sec-WebSocket-Protocol': ORBAN_SUBPROTOCOL })
    }
    if (closed || counters.open >= maxConnections || unauthenticatedOpen >= maxUnauthenticated) {
      counters.overloaded++
      log.warn({ remote: req.socket.remoteAddress, open: counters.open, unauthenticated: unauthenticatedOpen }, 'orban: upgrade refused, the platform is full')
      return rejectUpgrade(socket, 503, 'the platform takes no more agents now', { 'Retry-After': '30' })
    }
    const ip = ipBucket(req.socket.remoteAddress)
    const fromIp = perIp.get(ip) ?? 0
    if (fromIp >= maxConnectionsPerIp) {
      counters.perIpRefused++
      log.warn({ remote: req.socket.remoteAddress, open: fromIp }, 'orban: upgrade refused, too many connections from this address')
      return rejectUpgrade(socket, 429, `at most ${maxConnectionsPerIp} connections per address`, { 'Retry-After': '30' })
    }
    // A socket already gone would never say 'close': take no slot for it.
    if (socket.destroyed) return
    perIp.set(ip, fromIp + 1)
    unauthenticatedOpen++
    let unauthenticated = true
    const releaseAuthSlot = () => {
      if (!unauthenticated) return
      unauthenticated = false
      unauthenticatedOpen--
    }
    unauthenticatedSlots.set(socket, releaseAuthSlot)
    socket.once('close', () => {
      releaseAuthSlot()
      const left = (perIp.get(ip) ?? 1) - 1
      if (left > 0) perIp.set(ip, left)
      else perIp.delete(ip)
    })
    wss.handleUpgrade(req, socket, head, (ws) => onConnection(ws, req))
  }

  function registeredSession(agentId: string): (Session & { conn: Connection }) | undefined {
    const session = sessions.get(agentId)
    return session?.conn?.phase === 'registered' ? (session as Session & { conn: Connection }) : undefined
  }

  async function close() {
    if (closed) return
    closed = true
    clearInterval(watchdog)
    clearInterval(pinger)
    init.signal?.removeEventListener('abort', onAbort)
    for (const [taskId, pending] of pendingAssigns) {
      pendingAssigns.delete(taskId)
      clearTimeout(pending.timer)
      pending.resolve({ rejected: 'platform_closing' })
    }
    await Promise.all([...pendingPows.keys()].map((id) => settlePow(id, false, null)))
    for (const conn of connections) closeConn(conn, 1001, 'platform shutting down')
    // Let frames being handled finish (a second at most), so nothing writes to a closed store.
    let grace: ReturnType<typeof setTimeout> | undefined
    await Promise.race([Promise.all([...connections].map((c) => c.queue)), new Promise((r) => (grace = setTimeout(r, 1000)))])
    clearTimeout(grace)
    for (const conn of connections) conn.ws.terminate()
    await new Promise<void>((resolve) => wss.close(() => resolve()))
  }
  const onAbort = () => void close()
  if (init.signal?.aborted) void close()
  else init.signal?.addEventListener('abort', onAbort, { once: true })

  return {
    handleUpgrade,
    matches,
    async assignTask(agentId, task) {
      const message = createOrbanMessage('TASK_ASSIGN', task)
      const session = registeredSession(agentId)
      if (!session) return { rejected: 'agent_unavailable' }
      if (pendingAssigns.has(message.task_id) || (taskOwners.has(message.task_id) && taskOwners.get(message.task_id) !== agentId)) {
        return { rejected: 'duplicate_task', details: `task ${message.task_id} is already assigned` }
      }
      return new Promise<OrbanAssignResult>((resolve) => {
        const timer = setTimeout(() => {
          pendingAssigns.delete(message.task_id)
          log.warn({ agentId, taskId: message.task_id, connected: registeredSession(agentId) !== undefined }, `orban: no TASK_ACCEPT, TASK_REJECT or report on the task in ${acceptTimeoutMs} ms`)
          resolve({ rejected: 'timeout', details: `no answer in ${acceptTimeoutMs} ms` })
        }, acceptTimeoutMs)
        pendingAssigns.set(message.task_id, { agentId, resolve, timer })
        sendMessage(session.conn, message as unknown as OrbanMessage)
      })
    },
    async sendEarnings(agentId, record) {
      const message = createOrbanMessage('EARNINGS_RECORD', record)
      const { message_id: _id, timestamp: _ts, type: _type, ...payload } = message
      await store.putEarnings(agentId, payload, Date.now())
      const session = registeredSession(agentId)
      return { delivered: session ? sendMessage(session.conn, message as unknown as OrbanMessage) : false }
    },
    sendPayout(agentId, notification) {
      const message = createOrbanMessage('PAYOUT_NOTIFICATION', notification)
      const session = registeredSession(agentId)
      return session ? sendMessage(session.conn, message as unknown as OrbanMessage) : false
    },
    earnings(agentId) {
      return store.earnings(agentId, Date.now())
    },
    challengePow(agentId, difficulty = powDifficulty) {
      const session = registeredSession(agentId)
      if (!session) return Promise.reject(new OrbanAgentUnavailableError(agentId))
      const challengeId = randomUUID()
      const nonce = randomBytes(32)
      const issuedAt = Date.now()
      const deadline = issuedAt + powTimeoutMs
      return new Promise<boolean>((resolve) => {
        const timer = setTimeout(() => void settlePow(challengeId, false, null), powTimeoutMs)
        pendingPows.set(challengeId, { agentId, nonce, difficulty, issuedAt, deadline, resolve, timer })
        send(session.conn, 'POW_CHALLENGE', { challenge_id: challengeId, nonce: nonce.toString('hex'), difficulty, deadline: new Date(deadline) })
      })
    },
    agents() {
      return [...sessions.values()].filter((s) => s.conn?.phase === 'registered').map(view)
    },
    disconnect(agentId) {
      const conn = sessions.get(agentId)?.conn
      if (!conn) return false
      conn.ws.terminate()
      return true
    },
    stats() {
      return { ...counters }
    },
    close,
  }
}
