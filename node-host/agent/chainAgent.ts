import type { PrivateKey } from '@libp2p/interface'
import type { Address, Hash, LocalAccount } from 'viem'
import { claimIfAbove } from '../../shared/chain/claimReward.ts'
import { ChainActionError } from '../../shared/chain/errors.ts'
import { createInferenceProof, modelHashOf, type InferenceProof } from '../../shared/chain/proofHash.ts'
import { registerAgent } from '../../shared/chain/registerAgent.ts'
import { sendHeartbeat } from '../../shared/chain/sendHeartbeat.ts'
import { submitProof } from '../../shared/chain/submitProof.ts'
import type { ChainClient } from '../../shared/chain/transact.ts'
import type { Logger } from '../../shared/logger.ts'
import { createPlumiseOracleClient, type PlumiseOracleClient } from '../../shared/oracle/plumiseOracleClient.ts'
import { walletClientFor, type NodeChain } from '../chain/chainConfigFromEnv.ts'
import type { HostCounters, HostGeneration } from '../host/createNodeHost.ts'

export type ChainAgentInit = {
  chain: NodeChain
  /** The host's wallet (loadWallet). */
  account: LocalAccount
  /** The host's libp2p identity: the registry binds the wallet to it. */
  peer: { peerId: string; privateKey: PrivateKey }
  /** The Oracle's Plumise API (`--oracle` or ORACLE_API_URL); without it no metrics are reported. */
  oracleUrl?: string
  /** The model served, when known at start; otherwise the first generation's (agentRegister needs its hash). */
  model?: string
  /** Metrics reports (REPORT_INTERVAL). @default 60_000 */
  reportIntervalMs?: number
  /** Claim once the pending reward reaches this (CLAIM_THRESHOLD_WEI). @default 10n ** 18n */
  claimThresholdWei?: bigint
  /** Chain heartbeats (the registry counts an agent active for 300 s after one). @default 120_000 */
  heartbeatIntervalMs?: number
  /** The host's served-work counters, cumulative since start. */
  stats: () => HostCounters
  logger: Logger
  /** @default walletClientFor(chain, account) */
  client?: ChainClient
  /** Clock, unix ms. @default Date.now */
  now?: () => number
  /**
   * Most verifyInference transactions a minute: chain load stays bounded however many generations
   * there are; proofs beyond it wait in the queue (bounded too: the oldest go first). @default 60
   */
  maxProofsPerMinute?: number
  /** Proof hashes remembered as proven (or queued), so a repeat is skipped without a chain call. @default 100_000 */
  maxKnownProofs?: number
}

export type ChainAgentStats = {
  registered: boolean
  proofsQueued: number
  proofsSubmitted: number
  /** Refused by the chain for good (a duplicate proven before this process knew it), or dropped from a full queue. */
  proofsDropped: number
  /**
   * Generations whose proof this agent already queued or proved: the proof hash covers model,
   * prompt, output and agent only (spec §4), so a repeated greedy prompt repeats it and the chain
   * would refuse it. Skipped without a chain call.
   */
  proofsSkipped: number
  /** Transactions this agent sent (registration, proofs, heartbeats, claims). */
  transactions: number
  /** Submitted proofs not yet in an accepted report. */
  proofsUnreported: number
  heartbeats: number
  reports: number
  claims: number
  claimedWei: bigint
  lastError: string | null
}

export type ChainAgent = {
  readonly address: Address
  /** Registers (idempotent) and starts the timers. Resolves after the first registration attempt; never throws. */
  start(): Promise<void>
  /** Queues the proof of a generation this host originated; returns at once (generation never waits for the chain). */
  recordGeneration(generation: HostGeneration): void
  /** One report round now: submit queued proofs, report metrics, claim if above the threshold (the timer's work). */
  round(): Promise<void>
  /** One chain heartbeat now. */
  heartbeat(): Promise<void>
  stats(): ChainAgentStats
  /** Stops the timers, lets proofs in flight land (10 s at most), and sends a final report. */
  stop(): Promise<void>
}

/** The most proofs one report carries (the Oracle's limit) and the most kept waiting. */
const PROOFS_PER_REPORT = 1000
const MAX_QUEUED = 10_000

const wait = (ms: number) => new Promise<void>((r) => setTimeout(r, ms).unref?.())

/**
 * A host's part on chain: registers its wallet bound to its libp2p peer, keeps it active with
 * heartbeats, proves each generation it originated (verifyInference, queued: never in the way of
 * generation), reports its cumulative metrics with those proofs and their transactions to the
 * Oracle, and claims its reward once it passes the threshold. Every failure is logged and retried
 * on the next tick; none reaches the host.
 */
export function createChainAgent(init: ChainAgentInit): ChainAgent {
  const { chain, account, logger } = init
  const { config } = chain
  const client = init.client ?? walletClientFor(chain, account)
  const now = init.now ?? Date.now
  const startedAt = now()
  const thresholdWei = init.claimThresholdWei ?? 10n ** 18n
  const oracle: PlumiseOracleClient | undefined = init.oracleUrl ? createPlumiseOracleClient({ baseUrl: init.oracleUrl, account }) : undefined
  const peer = { peerId: init.peer.peerId, sign: (m: Uint8Array) => init.peer.privateKey.sign(m) }

  let model = init.model
  /** In the registry; and an agent account (agentRegister: what verifyInference checks), which needs the model. */
  let inRegistry = false
  let agentAccount = false
  const queue: InferenceProof[] = []
  const maxKnown = init.maxKnownProofs ?? 100_000
  /** Proof hashes queued, proven or refused as duplicates, oldest first (a bounded, insertion-ordered set). */
  const known = new Set<string>()
  const remember = (proofHash: string) => {
    known.delete(proofHash)
    known.add(proofHash)
    if (known.size > maxKnown) known.delete(known.values().next().value!)
  }
  // Token bucket of verifyInference sends: a minute's worth at most at once.
  const perMinute = init.maxProofsPerMinute ?? 60
  let proofTokens = perMinute
  let refilledAt = now()
  const takeProofToken = (): number => {
    const t = now()
    proofTokens = Math.min(perMinute, proofTokens + ((t - refilledAt) / 60_000) * perMinute)
    refilledAt = t
    if (proofTokens >= 1) {
      proofTokens -= 1
      return 0
    }
    return Math.ceil(((1 - proofTokens) / perMinute) * 60_000)
  }
  let resumeTimer: ReturnType<typeof setTimeout> | undefined
  let unreported: Array<{ proof: InferenceProof; txHash: Hash }> = []
  let stopping = false
  const timers = new Set<ReturnType<typeof setTimeout>>()
  const stats: ChainAgentStats = {
    registered: false,
    proofsQueued: 0,
    proofsSubmitted: 0,
    proofsDropped: 0,
    proofsSkipped: 0,
    transactions: 0,
    proofsUnreported: 0,
    heartbeats: 0,
    reports: 0,
    claims: 0,
    claimedWei: 0n,
    lastError: null,
  }
  const failed = (what: string, e: unknown) => {
    stats.lastError = `${what}: ${(e as Error).message.split('\n')[0]}`
    logger.warn({ err: stats.lastError }, `chain: ${what} failed; retrying next tick`)
  }

  // One transaction at a time from this wallet: concurrent sends would pick the same nonce.
  let lane: Promise<unknown> = Promise.resolve()
  const serial = <T>(fn: () => Promise<T>): Promise<T> => {
    const run = lane.then(fn)
    lane = run.catch(() => undefined)
    return run
  }

  /** True once proofs can be submitted (registered, and an agent account for the model). */
  const ensureRegistered = () =>
    serial(async () => {
      if (inRegistry && (agentAccount || !model)) return agentAccount
      const r = await registerAgent(client, {
        config,
        account,
        peer,
        metadata: model ? { model } : undefined,
        precompile: model ? { name: 'shardmesh', modelHash: modelHashOf(model) } : false,
      })
      inRegistry = stats.registered = true
      stats.transactions += Number(!!r.hash) + Number(!!r.precompileHash)
      if (model) agentAccount = true
      if (r.hash || r.precompileHash) logger.info({ wallet: account.address, peerId: peer.peerId, nodeId: r.nodeId, tx: r.hash, agentRegisterTx: r.precompileHash, model }, 'chain: agent registered')
      return agentAccount
    })

  async function submitQueued(): Promise<void> {
    while (queue.length) {
      if (!(await ensureRegistered())) return
      const waitMs = takeProofToken()
      if (waitMs > 0) {
        // Over the rate: the rest waits in the queue; sending resumes when the bucket has a token.
        if (!resumeTimer && !stopping) {
          resumeTimer = setTimeout(() => {
            resumeTimer = undefined
            void submit()
          }, waitMs)
          resumeTimer.unref?.()
        }
        return
      }
      const proof = queue[0]!
      try {
        const { hash } = await serial(() => submitProof(client, { config, account, proof }))
        stats.transactions++
        queue.shift()
        unreported.push({ proof, txHash: hash })
        // An Oracle that never takes a report must not make this grow for ever: the oldest go.
        if (unreported.length > MAX_QUEUED) unreported.shift()
        stats.proofsSubmitted++
        logger.debug({ proofHash: proof.proofHash, tokens: proof.tokenCount, tx: hash }, 'chain: inference proven')
      } catch (e) {
        if (!(e instanceof ChainActionError) || e.reason === undefined) throw e
        if (/not registered/.test(e.reason)) {
          // the chain forgot us (a fresh devnet): register again next tick
          inRegistry = agentAccount = stats.registered = false
          throw e
        }
        queue.shift()
        stats.proofsDropped++
        logger.warn({ proofHash: proof.proofHash, reason: e.reason }, 'chain: proof refused by the chain; dropped')
      }
    }
  }
  let submitting: Promise<void> | undefined
  const submit = (): Promise<void> =>
    (submitting ??= submitQueued()
      .catch((e: unknown) => failed('submitting proofs', e))
      .finally(() => (submitting = undefined)))

  async function report(signal?: AbortSignal): Promise<void> {
    // The Oracle books this wallet's reports for the host's node only through the binding on chain: none before it is there.
    if (!oracle || !inRegistry) return
    const c = init.stats()
    const batch = unreported.slice(0, PROOFS_PER_REPORT)
    await oracle.reportMetrics({
      tokensProcessed: c.tokensProcessed,
      requestCount: c.requestCount,
      avgLatencyMs: c.requestCount > 0 ? c.totalLatencyMs / c.requestCount : 0,
      uptimeSeconds: Math.floor((now() - startedAt) / 1000),
      proofs: batch.length ? batch.map(({ proof, txHash }) => ({ modelHash: proof.modelHash, inputHash: proof.inputHash, outputHash: proof.outputHash, tokenCount: proof.tokenCount, txHash })) : undefined,
      signal,
    })
    // only what this report carried: more may have landed meanwhile
    unreported = unreported.filter((p) => !batch.includes(p))
    stats.reports++
    logger.debug({ tokens: c.tokensProcessed, requests: c.requestCount, proofs: batch.length }, 'chain: metrics reported to the oracle')
  }

  async function claim(): Promise<void> {
    if (!inRegistry) return
    const r = await serial(() => claimIfAbove(client, { config, account, thresholdWei }))
    if (!r) return
    stats.claims++
    stats.transactions++
    stats.claimedWei += r.amount ?? 0n
    logger.info({ amountWei: (r.amount ?? 0n).toString(), tx: r.hash }, 'chain: reward claimed')
  }

  async function round(): Promise<void> {
    await submit()
    await report().catch((e: unknown) => failed('metrics report', e))
    await claim().catch((e: unknown) => failed('claim', e))
  }

  async function heartbeat(): Promise<void> {
    try {
      await ensureRegistered()
      await serial(() => sendHeartbeat(client, { config, account }))
      stats.heartbeats++
      stats.transactions++
    } catch (e) {
      failed('heartbeat', e)
    }
  }

  /** Runs `fn` every `ms`, never two at once. */
  const every = (ms: number, fn: () => Promise<void>) => {
    const next = () => {
      const t = setTimeout(() => {
        timers.delete(t)
        void fn().finally(() => !stopping && next())
      }, ms)
      t.unref?.()
      timers.add(t)
    }
    next()
  }

  return {
    address: account.address,
    async start() {
      logger.info({ wallet: account.address, chainId: config.chainId, rpcUrl: chain.rpcUrl, oracle: init.oracleUrl ?? null, claimThresholdWei: thresholdWei.toString() }, 'chain: agent starting')
      every(init.reportIntervalMs ?? 60_000, round)
      every(init.heartbeatIntervalMs ?? 120_000, heartbeat)
      await ensureRegistered().catch((e: unknown) => failed('registration', e))
    },
    recordGeneration(g) {
      if (stopping || g.tokenCount <= 0) return
      model ??= g.model
      const proof = createInferenceProof({ model: g.model, prompt: g.prompt, output: g.text, agentAddress: account.address, tokenCount: g.tokenCount })
      if (known.has(proof.proofHash)) {
        stats.proofsSkipped++
        remember(proof.proofHash)
        return
      }
      remember(proof.proofHash)
      queue.push(proof)
      stats.proofsQueued++
      if (queue.length > MAX_QUEUED) {
        queue.shift()
        stats.proofsDropped++
        logger.warn({ queued: queue.length }, 'chain: proof queue full (the chain is unreachable?): oldest dropped')
      }
      void submit()
    },
    round,
    heartbeat,
    stats: () => ({ ...stats, proofsQueued: queue.length, proofsUnreported: unreported.length }),
    async stop() {
      if (stopping) return
      stopping = true
      for (const t of timers) clearTimeout(t)
      clearTimeout(resumeTimer)
      await Promise.race([submit(), wait(10_000)])
      if (queue.length) logger.warn({ proofs: queue.length }, 'chain: stopping with proofs not submitted')
      await report(AbortSignal.timeout(5000)).catch((e: unknown) => failed('final metrics report', e))
    },
  }
}
