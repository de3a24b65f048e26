import { randomUUID } from 'node:crypto'
import { fileModelSource } from '../model/fileModelSource.ts'
import { createShardReferee } from './verify/shardReferee.ts'
import { createVerifyLedger } from './verify/verifyLedger.ts'
import { verifyConsequences } from './verify/verifyConsequences.ts'
import type { DatabaseSync } from 'node:sqlite'
import { createPublicClient } from 'viem'
import { chainHttp } from '../../shared/chain/chainHttp.ts'
import type { Logger } from '../../shared/logger.ts'
import { rangeBytes, type LayerRange } from '../../shared/oracle/assignLayers.ts'
import { ORBAN_MESH_LIMITS } from '../../shared/orban/orbanMeshClaims.ts'
import type { ShardTaskConfig } from '../../shared/oracle/shardTask.ts'
import { sendHeartbeat } from '../../shared/chain/sendHeartbeat.ts'
import type { OrbanMessageOf } from '../../shared/orban/orbanMessages.ts'
import { walletClientFor } from '../chain/chainConfigFromEnv.ts'
import { createOracleCore, DEFAULT_BOOKING_BOUNDS, type OracleCore } from './createOracleCore.ts'
import { createPageCredit, creditedByOracle } from './rewards/pageCredit.ts'
import { createPeerWallets } from './rewards/peerWallets.ts'
import { createServedLedger } from './rewards/servedLedger.ts'
import { createOracleServer, type OracleServer } from './createOracleServer.ts'
import type { ModelInfo } from './modelInfo.ts'
import { openOracleDatabase } from './store/oracleDatabase.ts'
import { createOracleMetrics } from './oracleMetrics.ts'
import { gpuPricing, parseGpuPricing, type GpuPricingConfig } from './rewards/gpuPricing.ts'
import { createOrbanChannel, type OrbanChannel, type OrbanConnectedAgent } from './orban/orbanChannel.ts'
import { createRewardReporter, type RewardReporter, type RewardReporterInit } from './rewards/rewardReporter.ts'
import { createRowPruner } from './store/rowPruner.ts'
import { createSqliteOracleStore } from './store/sqliteOracleStore.ts'
import { createSqliteOrbanStore } from './orban/sqliteOrbanStore.ts'
import { createWalletBindings } from './rewards/walletBindings.ts'

export type OracleInit = {
  /** SQLite file holding everything (created when missing). */
  db: string
  models: ModelInfo[]
  port: number
  host?: string
  /** Silence after which a node is dropped and its layers reassigned. @default 600_000 */
  silenceMs?: number
  /** Copies of each layer the assignment aims for. @default 2 */
  replicas?: number
  /** Every node that can serve does (pipelines beyond `replicas`); false keeps the rest idle as spares. @default true */
  grow?: boolean
  /** Orban heartbeat timeout: a quiet agent whose socket stays open is dropped and its layers reassigned. @default 90_000 */
  heartbeatTimeoutMs?: number
  /**
   * An Orban agent whose socket closed uncleanly keeps its range this long (a reconnect keeps it),
   * then its layers are re-planned; a clean close (code 1000) leaves at once. @default 5_000
   */
  reconnectGraceMs?: number
  /** Secret of the Orban JWTs; a fixed one keeps tokens valid across restarts. */
  jwtSecret?: string
  logger: Logger
  /** Rewards on chain: metrics are booked to the RewardPool's epoch, and closed epochs reported and distributed. */
  chain?: Pick<RewardReporterInit, 'chain' | 'account' | 'fundWeiPerEpoch' | 'pollMs'>
  /**
   * Only work a spot check sampled is reported for rewards: an agent none of whose committed steps
   * was sampled (and passed) in an epoch gets nothing for it (POST /api/v1/verify/sample). @default false
   */
  paySampledWorkOnly?: boolean
  /** Old proofs, metrics, replay-guard entries and Orban history are deleted after this. @default 30 days */
  retentionMs?: number
  /** Orban pricing per GPU class (REGISTER_ACK, TASK_ASSIGN, EARNINGS_RECORD). @default orbanPricing (by total VRAM) */
  pricing?: GpuPricingConfig
}

const GB = 1024 ** 3

/**
 * The whole Oracle: one SQLite file, the assignment core, the Plumise Oracle HTTP API and the
 * Orban agent channel on the same port. Orban agents (shardmesh node hosts and pages) are nodes
 * like Plumise ones: they join on AGENT_REGISTER, get their range as TASK_ASSIGN, are ready when
 * their task reports the `serving` stage, stay alive by heartbeats, and get a new TASK_ASSIGN
 * whenever the assignment moves them.
 */
export async function createOracle(init: OracleInit) {
  const { logger } = init
  const db: DatabaseSync = openOracleDatabase(init.db)
  const store = createSqliteOracleStore({ db })
  const modelSources = new Map(init.models.flatMap((m) => (m.folder ? [[m.name, fileModelSource(m.folder)] as const] : [])))
  // Spot-check evidence: checked by the Oracle's own recomputation on the model files it serves.
  let coreRef: OracleCore | undefined
  let epochOf: () => number = () => 0
  const consequences = verifyConsequences({ ledger: () => verify, core: () => coreRef, walletPeer: (w) => bindings?.peerOf(w) ?? Promise.resolve(undefined) })
  const verify = await createVerifyLedger({ store, referee: modelSources.size ? createShardReferee(modelSources) : undefined, epoch: () => epochOf(), logger, onBan: consequences.ban, paySampledWorkOnly: init.paySampledWorkOnly })
  const rewards: RewardReporter | undefined = init.chain && createRewardReporter({ ...init.chain, store, logger, withheld: consequences.withheld, unsampled: init.paySampledWorkOnly ? consequences.unsampled : undefined })
  if (rewards) epochOf = rewards.epoch
  await rewards?.start()
  // A wallet is credited with a node host's work only through a binding the host's key signed (checked on the registry's record).
  const reader = init.chain && createPublicClient({ chain: init.chain.chain.chain, transport: chainHttp(init.chain.chain.rpcUrl) })
  const bindings = init.chain && reader && createWalletBindings({ config: init.chain.chain.config, client: reader, logger })
  const core: OracleCore = await createOracleCore({ store, models: init.models, silenceMs: init.silenceMs, reconnectGraceMs: init.reconnectGraceMs, replicas: init.replicas, grow: init.grow, logger, epoch: rewards?.epoch, walletPeer: bindings?.peerOf, excludedPeer: verify.banned })
  coreRef = core
  // What agents served (their TASK_PROGRESS counters), bounded like metrics bookings: capacity × headroom.
  const served = createServedLedger({
    maxTokensPerSecond: (id) => Math.max(core.node(id)?.benchmarkTokPerSec ?? 0, DEFAULT_BOOKING_BOUNDS.minTokPerSec) * DEFAULT_BOOKING_BOUNDS.tokenHeadroom,
  })
  core.events.on('nodeLeft', (e) => served.forget(e.address))
  // Pages sign no reports: the Oracle books their served work to the wallet bound to their peer.
  const chainInit = init.chain
  const credit =
    chainInit && reader && bindings
      ? createPageCredit({
          core,
          wallets: createPeerWallets({ config: chainInit.chain.config, client: reader, bindings }),
          heartbeat: (wallet) => sendHeartbeat(walletClientFor(chainInit.chain, chainInit.account), { config: chainInit.chain.config, via: 'precompile', agent: wallet }),
          logger,
        })
      : undefined
  const modelFolders = new Map(init.models.flatMap((m) => (m.folder ? [[m.name, m.folder] as const] : [])))
  // The channel is made after the server (it upgrades the server's sockets): read lazily.
  let orbanRef: OrbanChannel | undefined
  let serverRef: OracleServer | undefined
  const metrics = createOracleMetrics({ core, server: () => serverRef?.stats(), orban: () => orbanRef, served })
  const server: OracleServer = await createOracleServer({ core, store, port: init.port, host: init.host, logger, modelFolders, metrics: () => metrics.render(), served, bookedEpoch: rewards && (() => rewards.epoch()), verify })
  serverRef = server
  /** The task each Orban agent was last sent, to re-send only on a change (or a new connection). */
  const sent = new Map<string, { taskId: string; range: LayerRange; model: string }>()
  const joining = new Set<string>()
  /** Agents that refused or failed their range, and until when they are not offered one again (doubling backoff). */
  const refused = new Map<string, { until: number; backoffMs: number }>()
  /**
   * When each shard task was sent, and to whom: a task is paid for no more time than it existed
   * (the agent reports its own execution time), and only to the agent it was given to.
   */
  const taskSentAt = new Map<string, { agentId: string; at: number }>()
  let closing = false
  /** What the channel itself answers when the agent never did (not a refusal: the agent may come back). */
  const TRANSIENT = new Set(['agent_unavailable', 'disconnected', 'timeout', 'platform_closing', 'unreachable'])

  const refuse = async (agentId: string, reason: string) => {
    const before = refused.get(agentId)
    const backoffMs = Math.min(600_000, before ? before.backoffMs * 2 : 30_000)
    refused.set(agentId, { until: Date.now() + backoffMs, backoffMs })
    sent.delete(agentId)
    logger.warn({ agentId, reason, retryInS: backoffMs / 1000 }, 'oracle: the agent refused or failed its range; it leaves the assignment for a while')
    await core.leave(agentId, reason)
  }

  async function dispatch(agentId: string, model: string, range: LayerRange): Promise<void> {
    const info = core.models().find((m) => m.name === model)
    const node = core.node(agentId)
    if (!info || !node) return
    const taskId = randomUUID()
    sent.set(agentId, { taskId, range, model })
    taskSentAt.set(taskId, { agentId, at: Date.now() })
    // Tasks never completed (agents gone) leave entries: keep the newest 10 000.
    if (taskSentAt.size > 10_000) taskSentAt.delete(taskSentAt.keys().next().value!)
    const config: ShardTaskConfig = { kind: 'shardmesh.shard', model, layer_start: range.start, layer_end: range.end, total_layers: info.numLayers }
    const onGpu = node.device !== 'cpu' && node.device !== 'wasm' && node.vramMb > 0
    // Never ask for more VRAM than the agent's largest GPU reports (unified memory reports none).
    // Upstream reads min_vram_gb as whole GB (u32): the range's bytes rounded up, capped at the largest GPU's whole GB.
    const gpuVramGb = Math.floor(Math.max(0, ...(orban.agents().find((a) => a.agentId === agentId)?.registration.hardware.gpus ?? []).map((g) => Number(g.vram_gb))))
    const minVramGb = onGpu ? Math.min(gpuVramGb, Math.ceil(rangeBytes(info, range) / GB)) : 0
    const result = await orban
      .assignTask(agentId, {
        task_id: taskId,
        job_id: `shard-${model}`.replace(/[^\w.-]/g, '-'),
        priority: 1,
        estimated_duration_sec: 0,
        requirements: { min_vram_gb: minVramGb, min_compute_capability: '', framework: 'onnxruntime', fp16: false },
        // A model in a local folder is offered by this server (a path relative to it); others by their URL or Hub id.
        payload: { model_url: info.folder ? `/models/${encodeURIComponent(info.name)}/` : info.source, model_hash: info.modelHash, input_data_url: '', output_url: '', config },
        // The rate this agent was offered at registration (the Oracle's pricing for its GPU class).
        pricing: orban.agents().find((a) => a.agentId === agentId)?.pricing ?? { base_rate_usd_per_hour: 0, gpu_multiplier: 1, effective_rate: 0 },
      })
      .catch((e: Error) => ({ rejected: 'unreachable', details: e.message }))
    if (result === 'accepted') {
      logger.info({ agentId, model, layers: `${range.start}-${range.end}`, taskId }, 'oracle: shard task accepted')
      return
    }
    if (sent.get(agentId)?.taskId !== taskId || closing) return
    if (TRANSIENT.has(result.rejected)) {
      // Not an answer from the agent: it re-registers when it reconnects, or the sweeper drops it.
      logger.info({ agentId, reason: result.rejected }, 'oracle: shard task not answered')
      sent.delete(agentId)
      return
    }
    await refuse(agentId, `rejected its range: ${result.rejected}${result.details ? ` (${result.details})` : ''}`)
  }

  /** A TASK_PROGRESS's served counters: into the ledger, and a page's onto its bound wallet. */
  async function countServed(agentId: string, progress: OrbanMessageOf<'TASK_PROGRESS'>): Promise<void> {
    const agent = orban.agents().find((a) => a.agentId === agentId)
    const node = core.node(agentId)
    if (!agent || !node || sent.get(agentId)?.taskId !== progress.task_id) return
    const who = { agentId, model: node.model, peerId: node.peerId, kind: creditedByOracle(agent.registration) ? ('page' as const) : ('host' as const), connectedAt: agent.connectedAt }
    const booking = served.report(who, { served: progress.served, throughput: progress.metrics.throughput_tokens_per_sec })
    if (!booking || !credit || who.kind !== 'page') return
    const credited = await credit.credit(who, booking)
    served.setWallet(agentId, credited?.wallet ?? null)
  }

  async function join(agent: OrbanConnectedAgent): Promise<void> {
    if (closing) return
    const held = refused.get(agent.agentId)
    if (held && Date.now() < held.until) {
      logger.debug({ agentId: agent.agentId }, 'oracle: agent refused its range recently; not offered one yet')
      return
    }
    // Whatever it was sent before, a (re)registering agent is sent its range anew.
    sent.delete(agent.agentId)
    const reg = agent.registration
    const mesh = reg.mesh
    const served = core.models().map((m) => m.name)
    const model = mesh?.model && served.includes(mesh.model) ? mesh.model : served[0]!
    const gpuVram = Math.max(0, ...reg.hardware.gpus.map((g) => Number(g.vram_gb)))
    const device = mesh?.device ?? (gpuVram > 0 ? 'webgpu' : 'cpu')
    // The channel has checked the mesh claim (peer id of the key, multiaddrs, capped memory and
    // score: checkOrbanMeshClaims). The score also waits for proof of a live, working agent: a
    // proof of work answered before joining; unproven, it joins with no score (weighed as the
    // median node by the assignment), so a claim alone cannot pull layers to it.
    const offered = mesh?.memory_mb
    joining.add(agent.agentId)
    let joined
    try {
      const proven = await orban.challengePow(agent.agentId).catch(() => false)
      logger[proven ? 'info' : 'warn']({ agentId: agent.agentId, proven }, proven ? 'oracle: proof of work verified' : 'oracle: proof of work not verified; the agent joins without its declared score')
      if (closing || !orban.agents().some((a) => a.agentId === agent.agentId)) return
      joined = await core.join({
        id: agent.agentId,
        kind: 'orban',
        model,
        // Without a mesh claim (upstream agents) the hardware section is all there is: capped alike.
        ramMb: offered ?? Math.min(ORBAN_MESH_LIMITS.maxMemoryMb, Math.round(Number(reg.hardware.memory_gb) * 1024)),
        vramMb: device === 'cpu' || device === 'wasm' ? 0 : (offered ?? Math.min(ORBAN_MESH_LIMITS.maxMemoryMb, Math.round(gpuVram * 1024))),
        device,
        benchmarkTokPerSec: proven ? (mesh?.benchmark_tok_per_sec ?? 0) : 0,
        peerId: mesh?.peer_id,
        multiaddrs: mesh?.multiaddrs ?? [],
      })
    } finally {
      joining.delete(agent.agentId)
    }
    logger.info({ agentId: agent.agentId, model, range: joined.range }, 'oracle: orban agent joined')
    // A (re)connected agent is sent its range again: it may have restarted without it.
    if (joined.range) await dispatch(agent.agentId, model, joined.range)
  }

  const orbanStore = createSqliteOrbanStore(db)
  // Bounded tables: epochs the reporter has not reported are kept whatever their age.
  const pruner = createRowPruner({ store, orbanStore, logger, retentionMs: init.retentionMs, keepFromEpoch: rewards && (() => rewards.stats().nextEpoch) })
  pruner.start()
  const orban: OrbanChannel = createOrbanChannel({
    store: orbanStore,
    logger,
    jwtSecret: init.jwtSecret,
    heartbeatTimeoutMs: init.heartbeatTimeoutMs,
    pricing: init.pricing && gpuPricing(parseGpuPricing(init.pricing)),
    hooks: {
      onRegister: (agent: OrbanConnectedAgent) => {
        // Back within the grace: its pending drop is cancelled before the proof of work, which takes a while.
        core.present(agent.agentId)
        return join(agent)
      },
      // An agent dropped for silence that speaks again (a long network outage) joins again.
      async onHeartbeat(agent, heartbeat) {
        if (!core.touch(agent.agentId) && !joining.has(agent.agentId)) await join(agent)
        if (heartbeat.mesh_load) core.reportLoad(agent.agentId, { activeSessions: heartbeat.mesh_load.active_sessions, queueDepth: heartbeat.mesh_load.queue_depth })
      },
      onMetrics(agentId) {
        core.touch(agentId)
      },
      // An agent that sends no HEARTBEAT (upstream's) stays while its socket answers pings.
      async onAlive(agentId) {
        if (core.touch(agentId) || joining.has(agentId)) return
        const agent = orban.agents().find((a) => a.agentId === agentId)
        if (agent) await join(agent)
      },
      onStateSync(agentId) {
        core.touch(agentId)
      },
      async onTaskProgress(agentId, progress) {
        core.touch(agentId)
        if (progress.stage === 'serving') refused.delete(agentId)
        const current = sent.get(agentId)
        if (current?.taskId === progress.task_id && progress.stage === 'serving' && progress.progress >= 1) await core.ready(agentId).catch(() => undefined)
        await countServed(agentId, progress)
      },
      // A shard task ends when a newer assignment replaces it: the time it served is paid at the rate of REGISTER_ACK.
      async onTaskComplete(agentId, complete) {
        const agent = orban.agents().find((a) => a.agentId === agentId)
        const given = taskSentAt.get(complete.task_id)
        taskSentAt.delete(complete.task_id)
        if (given?.agentId !== agentId) {
          logger.warn({ agentId, taskId: complete.task_id }, 'oracle: completion of a task this oracle did not give the agent (or gave before a restart): not paid')
          return
        }
        const existedS = (Date.now() - given.at) / 1000
        const seconds = Math.min(complete.result.execution_time_sec, existedS)
        if (seconds < complete.result.execution_time_sec) {
          logger.warn({ agentId, taskId: complete.task_id, claimedS: complete.result.execution_time_sec, paidS: seconds }, 'oracle: task execution time above its age clamped')
        }
        const hours = seconds / 3600
        const rate = Number(agent?.pricing.effective_rate ?? 0)
        const amount = Math.round(hours * rate * 1e6) / 1e6
        const payout = new Date(Date.now() + 7 * 86_400_000).toISOString().slice(0, 10)
        await orban.sendEarnings(agentId, {
          task_id: complete.task_id,
          earnings: { gpu_hours: hours, rate_usd_per_hour: rate, amount_usd: amount, bonus_multiplier: 1, final_amount_usd: amount },
          status: 'Pending',
          estimated_payout_date: payout,
        })
      },
      async onTaskFailed(agentId, failed) {
        if (sent.get(agentId)?.taskId !== failed.task_id || closing) return
        await refuse(agentId, `task failed: ${failed.error.message}`)
      },
      // A closed channel is no copy of anything: a clean close (1000, the agent said goodbye) leaves
      // at once; any other close keeps the range for the reconnect grace, then re-plans without it.
      async onDisconnect(agentId, info) {
        if (closing) return
        sent.delete(agentId)
        if (info.code === 1000) {
          logger.info({ agentId, code: info.code }, 'oracle: orban agent closed its channel: it leaves now')
          await core.leave(agentId, 'closed its channel')
          return
        }
        logger.info({ agentId, code: info.code }, 'oracle: orban agent disconnected: its layers are re-planned unless it reconnects within the grace')
        await core.absent(agentId)
      },
      // Its socket stays open but it stopped answering: no copy either (it joins again when it speaks).
      async onSilent(agentId, info) {
        if (closing) return
        sent.delete(agentId)
        await core.leave(agentId, info.connected ? 'silent on an open channel' : 'gone')
      },
    },
  })

  orbanRef = orban
  // Moves caused by other nodes' joins and leaves reach the Orban agents they concern.
  core.events.on('nodeLeft', (e) => sent.delete(e.address))
  core.events.on('assignment', (change) => {
    if (closing) return
    const node = core.node(change.id)
    if (!node || node.kind !== 'orban' || joining.has(change.id) || !change.range) return
    const last = sent.get(change.id)
    if (last && last.range.start === change.range.start && last.range.end === change.range.end && last.model === change.model) return
    dispatch(change.id, change.model, change.range).catch((e: Error) => logger.error({ agentId: change.id, err: e.message }, 'oracle: dispatching a range failed'))
  })

  server.server.on('upgrade', (req, socket, head) => {
    if (orban.matches(req)) orban.handleUpgrade(req, socket, head)
    else socket.end('HTTP/1.1 404 Not Found\r\nConnection: close\r\n\r\n')
  })

  return {
    url: server.url,
    core,
    orban,
    /** The Orban channel's records (registrations, earnings, metrics batches, proofs of work). */
    orbanStore,
    server,
    store,
    rewards,
    /** What the agents served (TASK_PROGRESS counters, bounded). */
    served,
    async close(): Promise<void> {
      closing = true
      metrics.close()
      served.close()
      pruner.stop()
      await orban.close()
      await server.close()
      await rewards?.stop()
      await core.close()
      db.close()
    },
  }
}

export type Oracle = Awaited<ReturnType<typeof createOracle>>
