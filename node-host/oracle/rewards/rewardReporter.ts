import { getAddress, type Account, type Hash, type Hex } from 'viem'
import { getBlock, getTransactionReceipt, readContract } from 'viem/actions'
import { z } from 'zod'
import { agentRegistryAbi, rewardPoolAbi } from '../../../shared/chain/abis.ts'
import { distributeRewards, isEpochDistributable } from '../../../shared/chain/distributeRewards.ts'
import { ChainActionError, UnsupportedOnChainError } from '../../../shared/chain/errors.ts'
import { isProofVerified } from '../../../shared/chain/isProofVerified.ts'
import { reportContributions, type ContributionReport } from '../../../shared/chain/reportContributions.ts'
import { contributionFromMetrics, contributionScore } from '../../../shared/chain/rewardFormula.ts'
import type { ChainClient } from '../../../shared/chain/transact.ts'
import type { Logger } from '../../../shared/logger.ts'
import { walletClientFor, type NodeChain } from '../../chain/chainConfigFromEnv.ts'
import type { MetricsTotals, OracleStore, ProofVerdict, StoredProofRow } from '../store/oracleStore.ts'

export type RewardReporterInit = {
  store: OracleStore
  /** The chain and its contracts (chainConfigFromEnv). */
  chain: NodeChain
  /** The RewardPool's oracle account (ORACLE_PRIVATE_KEY): the pool takes reports from it alone. */
  account: Account
  /** Wei sent to the pool with each epoch's reports: the devnet's stand-in for Plumise's block rewards. @default 0n */
  fundWeiPerEpoch?: bigint
  /** How often the chain's epoch is read. @default 5000 */
  pollMs?: number
  logger: Logger
  /** The client to send with. @default walletClientFor(chain, account) */
  client?: ChainClient
  /**
   * A proof whose transaction is older than this is not counted. The store forgets proofs after
   * the Oracle's retention (rowPruner.ts), and with them which ones were counted before: this keeps
   * an old proof from being counted twice. Keep it well below the retention. @default 7 days
   */
  maxProofAgeMs?: number
  /** Clock, unix ms. @default Date.now */
  now?: () => number
  /** An agent whose work of the epoch is not reported: it failed a confirmed spot check in it (verifyLedger.ts). */
  withheld?: (agent: string, epoch: number) => boolean | Promise<boolean>
  /** An agent whose work of the epoch is not reported: none of its committed steps was sampled by a spot check in it (verifyLedger.ts). */
  unsampled?: (agent: string, epoch: number) => boolean | Promise<boolean>
}

export type RewardReporterStats = {
  /** The epoch metrics are booked to now (the chain's, as last read). */
  epoch: number
  /** Metrics epochs below this are reported (or had nothing to report). */
  nextEpoch: number
  reportedEpochs: number
  /** reportContribution transactions sent, and the gas of the last one. */
  reports: number
  lastReportGas: number
  distributed: number[]
  /** Proof verdicts given since start. */
  proofs: Record<ProofVerdict, number>
  /** Agents left out of a report (not registered, or no recent heartbeat on chain). */
  skippedAgents: number
  /** Agents left out of a report after a confirmed failed spot check in the epoch. */
  withheldAgents: number
  /** Agents left out of a report because none of their committed steps was sampled in the epoch (unsampled). */
  unsampledAgents: number
  lastError: string | null
}

export type RewardReporter = {
  /** The epoch metrics are booked to: the chain's current one, as last read (the core's `epoch`). */
  epoch(): number
  /** Reads the chain's epoch (once: so bookings start right), then follows it every `pollMs`. */
  start(): Promise<void>
  /** One round: follow the epoch, report the epochs closed since the previous round, distribute ended ones. */
  tick(): Promise<void>
  stats(): RewardReporterStats
  /** Stops the timer and waits for the round in progress. */
  stop(): Promise<void>
}

/** What survives a restart (in the store's key/value table, one key per chain and pool). */
const stateSchema = z.object({
  /** Metrics epochs below this are done. */
  nextEpoch: z.number().int().min(0),
  /** The metrics epoch being reported, and what of it is on chain already (a restart resumes it, never repeats it). */
  current: z
    .object({
      epoch: z.number().int().min(0),
      funded: z.boolean(),
      /** Lowercase agent → its report's transaction. */
      reported: z.record(z.string(), z.string()),
    })
    .optional(),
  /** Chain epochs that received funding or reports and are not distributed yet. */
  toDistribute: z.array(z.number().int().min(0)),
})
type State = z.infer<typeof stateSchema>

/**
 * The Oracle's side of rewards: follows the RewardPool's epoch (metrics are booked to it), and
 * when an epoch has closed reports each agent's contribution for it from what the store booked:
 * processed tokens and uptime as the core booked them (bounded by what it observed of the node),
 * average latency, and as task count the number of its proofs the chain vouches for (each checked
 * with isProofVerified; a refused one is counted, logged, and its verdict stored). The pool books
 * reports to its current epoch, so epoch E's metrics are paid in the epoch they are reported in;
 * that one is distributed once it has ended. Progress is persisted after every transaction.
 */
export function createRewardReporter(init: RewardReporterInit): RewardReporter {
  const { store, chain, logger } = init
  const { config } = chain
  const client = init.client ?? walletClientFor(chain, init.account)
  const pollMs = init.pollMs ?? 5000
  const fundWei = init.fundWeiPerEpoch ?? 0n
  const maxProofAgeMs = init.maxProofAgeMs ?? 7 * 86_400_000
  const clock = init.now ?? Date.now
  /** One state per chain (its genesis: a fresh devnet has the same pool address) and pool. */
  let stateKey: string | undefined
  const keyOf = async () =>
    (stateKey ??= `chain:rewards:${config.chainId}:${config.contracts.rewardPool.toLowerCase()}:${(await getBlock(client, { blockNumber: 0n })).hash}`)
  const pool = { address: config.contracts.rewardPool, abi: rewardPoolAbi } as const
  const registry = { address: config.contracts.agentRegistry, abi: agentRegistryAbi } as const

  let chainEpoch = 0
  /** The chain's epoch at the previous round (or at start): epochs below it closed before then, so no booking to them is in flight. */
  let settledEpoch: number | undefined
  let state: State | undefined
  let timer: ReturnType<typeof setTimeout> | undefined
  let running: Promise<void> | undefined
  let stopped = false
  const stats: RewardReporterStats = {
    epoch: 0,
    nextEpoch: 0,
    reportedEpochs: 0,
    reports: 0,
    lastReportGas: 0,
    distributed: [],
    proofs: { verified: 0, refused: 0, duplicate: 0 },
    skippedAgents: 0,
    withheldAgents: 0,
    unsampledAgents: 0,
    lastError: null,
  }

  async function loadState(): Promise<State | undefined> {
    const raw = await store.getValue(await keyOf())
    if (raw === undefined) return undefined
    const parsed = stateSchema.safeParse(JSON.parse(raw))
    if (!parsed.success) throw new Error(`stored reward state ${await keyOf()} is invalid: ${parsed.error.issues[0]!.message}`)
    return parsed.data
  }
  const save = async (s: State) => {
    state = s
    stats.nextEpoch = s.nextEpoch
    await store.setValue(await keyOf(), JSON.stringify(s))
  }

  /** The last epoch read, kept for a start while the chain is unreachable (bookings go to it meanwhile). */
  const lastEpochKey = `chain:rewards:lastEpoch:${config.chainId}:${config.contracts.rewardPool.toLowerCase()}`

  async function readEpoch(): Promise<number> {
    const e = Number(await readContract(client, { ...pool, functionName: 'getCurrentEpoch' }))
    if (e !== chainEpoch) await store.setValue(lastEpochKey, String(e))
    chainEpoch = Math.max(chainEpoch, e)
    stats.epoch = chainEpoch
    return chainEpoch
  }

  async function verdictOf(row: StoredProofRow): Promise<ProofVerdict> {
    const earlier = (await store.proofsByHash(row.proofHash)).some((r) => r.id < row.id && r.verdict === 'verified')
    if (earlier) return 'duplicate'
    const proof = {
      modelHash: row.modelHash as Hex,
      inputHash: row.inputHash as Hex,
      outputHash: row.outputHash as Hex,
      agentAddress: getAddress(row.agent),
      tokenCount: row.tokenCount,
      proofHash: row.proofHash as Hex,
    }
    try {
      if (!(await isProofVerified(client, { config, proof, txHash: (row.txHash ?? undefined) as Hash | undefined }))) return 'refused'
      if (row.txHash) {
        const receipt = await getTransactionReceipt(client, { hash: row.txHash as Hash })
        const { timestamp } = await getBlock(client, { blockNumber: receipt.blockNumber })
        if (Number(timestamp) * 1000 < clock() - maxProofAgeMs) return 'refused'
      }
      return 'verified'
    } catch (e) {
      if (e instanceof UnsupportedOnChainError) return 'refused' // no transaction named: nothing to check it against
      throw e
    }
  }

  /** Checks the epoch's unchecked proofs against the chain; returns each agent's count of verified ones. */
  async function verifiedTasks(epoch: number): Promise<Map<string, number>> {
    const counts = new Map<string, number>()
    for (const row of await store.epochProofs(epoch)) {
      let verdict = row.verdict
      if (verdict === null) {
        verdict = await verdictOf(row)
        await store.setProofVerdict(row.id, verdict)
        stats.proofs[verdict]++
        if (verdict === 'verified') logger.debug({ agent: row.agent, proofHash: row.proofHash, epoch }, 'rewards: proof verified on chain')
        else logger.warn({ agent: row.agent, proofHash: row.proofHash, txHash: row.txHash, epoch, verdict }, 'rewards: proof not counted (the chain does not vouch for it)')
      }
      if (verdict === 'verified') counts.set(row.agent, (counts.get(row.agent) ?? 0) + 1)
    }
    return counts
  }

  /**
   * Seconds of uptime credited to the agent in `epoch`: what the core booked after bounding it by
   * the time it saw the node serving. Rows booked before bounding existed: the rise of its
   * cumulative uptime since its last report before (all of it after a restart).
   */
  async function uptimeIn(t: MetricsTotals): Promise<number> {
    if (t.uptimeCredited !== null) return t.uptimeCredited
    const before = (await store.metricsTotals(t.agent)).find((x) => x.epoch < t.epoch)
    return before && t.uptimeSeconds >= before.uptimeSeconds ? t.uptimeSeconds - before.uptimeSeconds : t.uptimeSeconds
  }

  async function contributionsOf(epoch: number): Promise<ContributionReport[]> {
    const tasks = await verifiedTasks(epoch)
    const out: ContributionReport[] = []
    for (const t of await store.epochTotals(epoch)) {
      const c = contributionFromMetrics({
        tokensProcessed: t.tokens,
        avgLatencyMs: t.requests > 0 ? t.latencyMsSum / t.requests : 0,
        uptimeSeconds: await uptimeIn(t),
        requestCount: tasks.get(t.agent) ?? 0,
      })
      if (contributionScore(c) === 0n) continue
      const agent = getAddress(t.agent)
      if (await init.withheld?.(agent, epoch)) {
        stats.withheldAgents++
        logger.warn({ agent, epoch }, 'rewards: agent left out of the report (a confirmed failed spot check in this epoch)')
        continue
      }
      if (await init.unsampled?.(agent, epoch)) {
        stats.unsampledAgents++
        logger.warn({ agent, epoch }, 'rewards: agent left out of the report (no committed step of it was sampled in this epoch: its work is unverified)')
        continue
      }
      const [registered, active] = await Promise.all([
        readContract(client, { ...registry, functionName: 'isRegistered', args: [agent] }),
        readContract(client, { ...registry, functionName: 'isActive', args: [agent] }),
      ])
      if (!registered || !active) {
        stats.skippedAgents++
        logger.warn({ agent, epoch, registered, active }, 'rewards: agent left out of the report (the pool takes registered agents with a recent heartbeat only)')
        continue
      }
      out.push({ agent, ...c })
    }
    return out
  }

  async function reportEpoch(s: State, epoch: number): Promise<State> {
    const contributions = await contributionsOf(epoch)
    let cur = s.current?.epoch === epoch ? s.current : { epoch, funded: false, reported: {} }
    const toDistribute = new Set(s.toDistribute)
    s = { ...s, current: cur }
    if (contributions.length && fundWei > 0n && !cur.funded) {
      const r = await reportContributions(client, { config, account: init.account, contributions: [], fundWei })
      if (r.fundEpoch !== undefined) toDistribute.add(Number(r.fundEpoch))
      cur = { ...cur, funded: true }
      s = await saveWith(s, cur, toDistribute)
      logger.info({ epoch, fundWei: fundWei.toString(), chainEpoch: Number(r.fundEpoch), tx: r.fundHash }, 'rewards: funded the pool')
    }
    for (const c of contributions) {
      const key = c.agent.toLowerCase()
      if (cur.reported[key]) continue
      let hash: string
      try {
        const r = await reportContributions(client, { config, account: init.account, contributions: [c] })
        const sent = r.reports[0]!
        hash = sent.hash
        toDistribute.add(Number(sent.epoch))
        stats.reports++
        stats.lastReportGas = Number(sent.gasUsed)
        logger.info(
          { epoch, chainEpoch: Number(sent.epoch), agent: c.agent, processedTokens: Number(c.processedTokens), taskCount: Number(c.taskCount), uptimeSeconds: Number(c.uptimeSeconds), avgLatencyInv: Number(c.avgLatencyInv), gas: Number(sent.gasUsed) },
          'rewards: contribution reported',
        )
      } catch (e) {
        // a revert is about this agent alone (e.g. its heartbeat lapsed since the check): the others go on
        if (!(e instanceof ChainActionError) || e.reason === undefined) throw e
        stats.skippedAgents++
        logger.warn({ epoch, agent: c.agent, reason: e.reason }, 'rewards: the pool refused a contribution')
        hash = 'refused'
      }
      cur = { ...cur, reported: { ...cur.reported, [key]: hash } }
      s = await saveWith(s, cur, toDistribute)
    }
    stats.reportedEpochs++
    return { nextEpoch: epoch + 1, current: undefined, toDistribute: [...toDistribute].sort((a, b) => a - b) }
  }

  const saveWith = async (s: State, cur: NonNullable<State['current']>, toDistribute: Set<number>): Promise<State> => {
    const next = { ...s, current: cur, toDistribute: [...toDistribute].sort((a, b) => a - b) }
    await save(next)
    return next
  }

  /** Distributes every chain epoch in the list that has ended. */
  async function distribute(s: State): Promise<State> {
    for (const epoch of s.toDistribute.filter((e) => e < chainEpoch)) {
      if (await isEpochDistributable(client, { config, epoch: BigInt(epoch) })) {
        const d = await distributeRewards(client, { config, account: init.account, epoch: BigInt(epoch) })
        stats.distributed.push(epoch)
        logger.info({ chainEpoch: epoch, totalReward: d.totalReward.toString(), agents: Number(d.agentCount), gas: Number(d.gasUsed), tx: d.hash }, 'rewards: epoch distributed')
      } else {
        logger.info({ chainEpoch: epoch }, 'rewards: epoch already distributed or unfunded: nothing to distribute')
      }
      s = { ...s, toDistribute: s.toDistribute.filter((e) => e !== epoch) }
      await save(s)
    }
    return s
  }

  /** The first round for this pool: report from the epoch bookings started in. */
  async function begin(from: number): Promise<State> {
    const s = { nextEpoch: from, toDistribute: [] }
    if ((await store.epochTotals(from)).length) logger.warn({ epoch: from, key: stateKey }, 'rewards: the database already holds metrics for this epoch, from another chain or pool; they will be reported too (give a fresh devnet a fresh --db)')
    await save(s)
    logger.info({ epoch: from, rewardPool: config.contracts.rewardPool }, 'rewards: following the pool from this epoch')
    return s
  }

  /** The stored state, unless the chain is behind it (a new chain behind the same addresses): then a fresh one. */
  async function resume(now: number): Promise<State | undefined> {
    const s = await loadState()
    if (!s || s.nextEpoch <= now) return s
    logger.warn({ stored: s.nextEpoch, epoch: now }, 'rewards: the chain is behind the stored progress (a new devnet?): starting over from its epoch')
    return begin(now)
  }

  async function round(): Promise<void> {
    const booked = chainEpoch
    const now = await readEpoch()
    let s = state ?? (await resume(now)) ?? (await begin(Math.min(booked, now)))
    state = s
    stats.nextEpoch = s.nextEpoch
    const closed = settledEpoch === undefined ? s.nextEpoch : Math.min(settledEpoch, now)
    while (s.nextEpoch < closed && !stopped) {
      s = await reportEpoch(s, s.nextEpoch)
      await save(s)
    }
    if (!stopped) await distribute(s)
    settledEpoch = now
    stats.lastError = null
  }

  const tick = (): Promise<void> => {
    running ??= round().finally(() => (running = undefined))
    return running
  }

  const loop = () => {
    timer = setTimeout(() => {
      void tick()
        .catch((e: Error) => {
          stats.lastError = e.message
          logger.warn({ err: e.message }, 'rewards: round failed; retrying next round')
        })
        .finally(() => {
          if (!stopped) loop()
        })
    }, pollMs)
    timer.unref?.()
  }

  return {
    epoch: () => chainEpoch,
    async start() {
      try {
        await readEpoch()
        state = (await resume(chainEpoch)) ?? (await begin(chainEpoch))
        // nothing of this process is booked yet: the epochs closed before now can be reported in the first round
        settledEpoch = chainEpoch
      } catch (e) {
        // the chain may come later: bookings go to the last epoch known until it does
        chainEpoch = Math.max(chainEpoch, Number((await store.getValue(lastEpochKey)) ?? 0) || 0)
        stats.lastError = (e as Error).message
        logger.warn({ err: (e as Error).message, epoch: chainEpoch }, 'rewards: cannot read the chain epoch yet; retrying')
      }
      logger.info({ epoch: chainEpoch, fundWeiPerEpoch: fundWei.toString(), oracle: init.account.address, rewardPool: config.contracts.rewardPool }, 'rewards: reporter started')
      loop()
    },
    tick,
    stats: () => ({ ...stats, distributed: [...stats.distributed], proofs: { ...stats.proofs } }),
    async stop() {
      stopped = true
      clearTimeout(timer)
      await running?.catch(() => undefined)
    },
  }
}

