import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import type { PrivateKey } from '@libp2p/interface'
import { getContractEvents } from 'viem/actions'
import { privateKeyToAccount } from 'viem/accounts'
import { rewardPoolAbi } from '../shared/chain/abis.ts'
import { getPendingReward } from '../shared/chain/getPendingReward.ts'
import { createInferenceProof } from '../shared/chain/proofHash.ts'
import { registerAgent } from '../shared/chain/registerAgent.ts'
import { loadShards } from '../shared/engine/loadShards.ts'
import type { ShardSession } from '../shared/engine/shardSession.ts'
import { silentLogger } from '../shared/logger.ts'
import type { Evidence } from '../shared/verify/evidence.ts'
import { recomputeLastRow } from '../shared/verify/recompute.ts'
import { createStepLog } from '../shared/verify/stepLog.ts'
import { rowFromBytes } from '../shared/verify/verifyProtocol.ts'
import { startDevnet, type DevAccount, type Devnet } from '../node-host/chain/startDevnet.ts'
import { nodeRuntime } from '../node-host/engine/nodeRuntime.ts'
import { fileModelSource } from '../node-host/model/fileModelSource.ts'
import { createOracleCore, type OracleCore } from '../node-host/oracle/createOracleCore.ts'
import { readModelInfo } from '../node-host/oracle/modelInfo.ts'
import { createRewardReporter, type RewardReporter } from '../node-host/oracle/rewards/rewardReporter.ts'
import type { OracleStore } from '../node-host/oracle/store/oracleStore.ts'
import { createSqliteOracleStore } from '../node-host/oracle/store/sqliteOracleStore.ts'
import { createShardReferee } from '../node-host/oracle/verify/shardReferee.ts'
import { verifyConsequences } from '../node-host/oracle/verify/verifyConsequences.ts'
import { createVerifyLedger, type VerifyLedger } from '../node-host/oracle/verify/verifyLedger.ts'
import { loadFixture, type Fixture } from './fixtures.ts'

const MODEL = 'docs-llama-7m'

export type RewardsDevnetInit = {
  /** Reward pool funding per epoch, wei. */
  fundWeiPerEpoch: bigint
  /** Pay only the work of peers sampled in the epoch (the ledger's paySampledWorkOnly; the reporter is told who was not). @default false */
  paySampledWorkOnly?: boolean
}

export type RewardsDevnet = {
  devnet: Devnet
  store: OracleStore
  core: OracleCore
  reporter: RewardReporter
  ledger: VerifyLedger
  fixture: Fixture
  /** All of docs-llama-7m's layers, computed honestly: what evidence is made from and checked against. */
  honestShard: ShardSession
  /** The two hosts: registered on chain with their peer keys, joined and ready in the core. */
  hosts: [DevAccount, DevAccount]
  /** A third account that only reads the chain. */
  stranger: DevAccount
  /** A host's libp2p peer id. */
  peerOf(who: DevAccount): string
  /**
   * What an origin's spot check of `who`'s step sends the Oracle: `who`'s signed commitment to
   * `shard`'s step on the first prompt, its audit, and a checker's row recomputed honestly.
   */
  evidenceOf(who: DevAccount, shard: ShardSession, session: string, origin?: string): Promise<Evidence>
  /** The agents the reward pool has ContributionReported events for, in order. */
  reportedAgents(): Promise<string[]>
  /** What the pool holds for `who` to claim, wei. */
  pendingReward(who: DevAccount): Promise<bigint>
  stop(): Promise<void>
}

/**
 * The Oracle's verification and reward path on a real devnet and SQLite store, for the tests of
 * what verification does to pay (verifyRewards, sampledRewards): two hosts registered on chain and
 * serving one model in the core, a reward reporter and a verify ledger with the Oracle's referee.
 * The core's clock is 200 s on, so the hosts' metrics count as served time.
 */
export async function startRewardsDevnet(init: RewardsDevnetInit): Promise<RewardsDevnet> {
  const dir = await mkdtemp(join(tmpdir(), 'rewards-devnet-'))
  let devnet: Devnet | undefined
  let store: OracleStore | undefined
  let reporter: RewardReporter | undefined
  // The consequences need the ledger and the core, made after the reporter they are given to.
  let ledger: VerifyLedger | undefined
  let core: OracleCore | undefined
  /** Undoes what was started, also when the setup fails half way (no anvil left running). */
  const stop = async () => {
    await reporter?.stop()
    await core?.close()
    await store?.close()
    await devnet?.close()
    await rm(dir, { recursive: true, force: true })
  }
  try {
    const fixture = await loadFixture(MODEL)
    const honestShard = (await loadShards({ source: fileModelSource(fixture.dir), runtime: nodeRuntime({ spinning: false }), device: 'cpu', ranges: [{ start: 0, end: 8 }] })).shards[0]!
    const net = (devnet = await startDevnet({ blockTime: 0, blocksPerEpoch: 10 }))
    const [a, b, stranger] = net.accounts.others as [DevAccount, DevAccount, DevAccount]
    const hosts: [DevAccount, DevAccount] = [a, b]
    const keys = new Map<string, PrivateKey>()
    const lower = (who: DevAccount) => who.address.toLowerCase()
    const peerOf = (who: DevAccount) => peerIdFromPrivateKey(keys.get(lower(who))!).toString()
    for (const who of hosts) {
      const key = await generateKeyPair('Ed25519')
      keys.set(lower(who), key)
      await registerAgent(net.walletClient(who), {
        config: net.config,
        peer: { peerId: peerIdFromPrivateKey(key).toString(), sign: (m) => key.sign(m) },
        precompile: { name: 'shardmesh', modelHash: createInferenceProof({ model: MODEL, prompt: '', output: '', agentAddress: who.address, tokenCount: 0 }).modelHash },
      })
    }
    const db = (store = createSqliteOracleStore({ path: join(dir, 'oracle.db') }))
    const chain = { config: net.config, rpcUrl: net.rpcUrl, chain: net.chain, devnet: net.file }
    const consequences = verifyConsequences({ ledger: () => ledger!, core: () => core! })
    const rewards = (reporter = createRewardReporter({
      store: db,
      chain,
      account: privateKeyToAccount(net.accounts.oracle.privateKey),
      fundWeiPerEpoch: init.fundWeiPerEpoch,
      logger: silentLogger,
      pollMs: 3_600_000,
      withheld: consequences.withheld,
      ...(init.paySampledWorkOnly ? { unsampled: consequences.unsampled } : {}),
    }))
    await rewards.start()
    const verify = (ledger = await createVerifyLedger({
      store: db,
      referee: createShardReferee(new Map([[MODEL, fileModelSource(fixture.dir)]])),
      epoch: () => rewards.epoch(),
      logger: silentLogger,
      onBan: consequences.ban,
      ...(init.paySampledWorkOnly ? { paySampledWorkOnly: true } : {}),
    }))
    const clock = { t: Date.now() }
    const oracle = (core = await createOracleCore({ store: db, models: [await readModelInfo(undefined)], logger: silentLogger, epoch: () => rewards.epoch(), sweepIntervalMs: 3_600_000, replicas: 2, now: () => clock.t, excludedPeer: verify.banned }))
    for (const [i, who] of hosts.entries()) {
      await oracle.join({ id: lower(who), kind: 'plumise', model: MODEL, grpcEndpoint: `http://10.0.0.${i + 1}:50051`, httpEndpoint: '', ramMb: 16_384, vramMb: 0, device: 'cpu', peerId: peerOf(who) })
      await oracle.ready(lower(who))
    }
    clock.t += 200_000

    return {
      devnet: net,
      store: db,
      core: oracle,
      reporter: rewards,
      ledger: verify,
      fixture,
      honestShard,
      hosts,
      stranger,
      peerOf,
      async evidenceOf(who, shard, session, origin = 'origin') {
        const key = keys.get(lower(who))!
        const log = createStepLog({ signer: { peerId: peerOf(who), sign: (d) => key.sign(d) }, model: MODEL, hiddenSize: 256 })
        const tokens = fixture.prompts[0]!.input_ids
        const out = await shard.forward(session, { tokens }, { reset: true })
        shard.drop(session)
        const { commitment: digest } = log.record({ origin, sessionId: session, range: { start: 0, end: 8 }, step: 0n, chunkIndex: 0, input: { case: 'tokens', value: { $typeName: 'shardmesh.mesh.v1.TokenIds', ids: tokens } }, output: out, start: true })
        const audit = await log.audit(origin, session, digest)
        return { commitment: audit.commitment, signature: audit.signature, inputs: audit.inputs, output: rowFromBytes(audit.output), checker: 'checker', checkerOutput: await recomputeLastRow(honestShard, audit.inputs) }
      },
      async reportedAgents() {
        const logs = await getContractEvents(net.walletClient(stranger), { address: net.contracts.rewardPool, abi: rewardPoolAbi, eventName: 'ContributionReported', fromBlock: 0n })
        return logs.map((l) => l.args.agent!)
      },
      pendingReward: (who) => getPendingReward(net.walletClient(stranger), { config: net.config, agent: who.address }),
      stop,
    }
  } catch (e) {
    await stop().catch(() => undefined)
    throw e
  }
}
