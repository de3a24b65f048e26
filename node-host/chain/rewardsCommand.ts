import { parseArgs } from 'node:util'
import { createPublicClient, formatEther, getAddress, type Address } from 'viem'
import { chainHttp } from '../../shared/chain/chainHttp.ts'
import { getBalance } from 'viem/actions'
import { z } from 'zod'
import { claimReward } from '../../shared/chain/claimReward.ts'
import { getPendingReward } from '../../shared/chain/getPendingReward.ts'
import { getEpochInfo, getRewardHistory } from '../../shared/chain/getRewardStatus.ts'
import type { ChainClient } from '../../shared/chain/transact.ts'
import { UsageError, parseOptions } from '../cli/usageError.ts'
import { chainConfigFromEnv, walletClientFor, type NodeChain } from './chainConfigFromEnv.ts'
import { loadWallet } from './loadWallet.ts'

export const REWARDS_USAGE = `usage: shardmesh rewards [--address 0x…]
       the RewardPool's current epoch and when it ends, the pending reward and past epochs and claims of
       --address (default: the configured wallet, PLUMISE_PRIVATE_KEY or PLUMISE_KEYSTORE); the chain from
       PLUMISE_CHAIN_ID / PLUMISE_RPC_URL (a devnet's from SHARDMESH_DEVNET_FILE).
usage: shardmesh claim
       claims the configured wallet's pending reward; prints the transaction and the balance before and after.`

const rewardsSchema = z.object({
  address: z
    .string()
    .regex(/^0x[0-9a-fA-F]{40}$/, 'a 0x address (40 hex digits)')
    .transform((a) => getAddress(a))
    .optional(),
})

export type RewardsOptions = z.infer<typeof rewardsSchema>

export function parseRewardsArgs(argv: string[]): RewardsOptions {
  const { values, positionals } = parseArgs({ args: argv, options: { address: { type: 'string' } }, strict: true, allowPositionals: true })
  if (positionals.length) throw new UsageError(`rewards takes no arguments, got "${positionals.join(' ')}"`)
  return parseOptions(rewardsSchema, values)
}

export function parseClaimArgs(argv: string[]): Record<string, never> {
  parseArgs({ args: argv, options: {}, strict: true, allowPositionals: false })
  return {}
}

/** Where the commands read their configuration and write their lines (tests pass their own). */
export type CommandIo = { env?: Record<string, string | undefined>; print?: (line: string) => void }

const unit = (chain: NodeChain) => chain.chain.nativeCurrency.symbol
const amount = (wei: bigint, chain: NodeChain) => `${formatEther(wei)} ${unit(chain)} (${wei} wei)`

/** Prints epoch, pending reward and history for one address. Returns what it printed, as data. */
export async function runRewards(opts: RewardsOptions, io: CommandIo = {}) {
  const env = io.env ?? process.env
  const print = io.print ?? ((l: string) => process.stdout.write(`${l}\n`))
  const chain = await chainConfigFromEnv(env)
  const address: Address = opts.address ?? (await loadWallet({ env })).address
  const client = createPublicClient({ chain: chain.chain, transport: chainHttp(chain.rpcUrl) }) as ChainClient
  const [info, pending, history] = await Promise.all([
    getEpochInfo(client, { config: chain.config }),
    getPendingReward(client, { config: chain.config, agent: address }),
    getRewardHistory(client, { config: chain.config, agent: address }),
  ])
  print(`chain ${chain.config.chainId} (${chain.config.name}) at ${chain.rpcUrl}`)
  print(`address ${address}`)
  const ends = info.endBlock === undefined ? '' : `, ends at block ${info.endBlock} (${info.endBlock - info.blockNumber} blocks from now, block ${info.blockNumber})`
  print(`epoch ${info.epoch}${ends}`)
  print(`pending reward ${amount(pending, chain)}`)
  if (!history.epochs.length) print('epochs: none reported for this address')
  for (const e of history.epochs) print(`epoch ${e.epoch}: share ${amount(e.share, chain)} of ${formatEther(e.totalReward)} ${unit(chain)}, ${e.distributed ? 'distributed' : 'not distributed yet'}`)
  if (!history.claims.length) print('claims: none')
  for (const c of history.claims) print(`claimed ${amount(c.amount, chain)} in block ${c.blockNumber}, tx ${c.hash}`)
  return { address, info, pending, history }
}

/** Claims with the configured wallet, printing the transaction and the balance before and after. */
export async function runClaim(_opts: Record<string, never>, io: CommandIo = {}) {
  const env = io.env ?? process.env
  const print = io.print ?? ((l: string) => process.stdout.write(`${l}\n`))
  const chain = await chainConfigFromEnv(env)
  const account = await loadWallet({ env })
  const client = walletClientFor(chain, account)
  const pending = await getPendingReward(client, { config: chain.config, agent: account.address })
  const before = await getBalance(client, { address: account.address })
  print(`wallet ${account.address} on chain ${chain.config.chainId}`)
  print(`pending reward ${amount(pending, chain)}`)
  print(`balance before ${amount(before, chain)}`)
  if (pending === 0n) throw new NothingToClaimError(account.address)
  const claim = await claimReward(client, { config: chain.config })
  print(`claim tx ${claim.hash} (block ${claim.receipt.blockNumber}, gas ${claim.receipt.gasUsed} at ${claim.receipt.effectiveGasPrice} wei)`)
  print(`claimed ${amount(claim.amount ?? 0n, chain)}`)
  // At the claim's block; a devnet without historical state (npm start) answers only the latest.
  const after = await getBalance(client, { address: account.address, blockNumber: claim.receipt.blockNumber }).catch(() => getBalance(client, { address: account.address }))
  print(`balance after ${amount(after, chain)}`)
  return { address: account.address, pending, before, after, claim }
}

export class NothingToClaimError extends Error {
  constructor(address: Address) {
    super(`${address} has no pending reward to claim`)
    this.name = 'NothingToClaimError'
  }
}
