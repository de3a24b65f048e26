import { parseArgs } from 'node:util'
import { getAddress, parseEther, type Address } from 'viem'
import { z } from 'zod'
import { UsageError, parseOptions } from '../cli/usageError.ts'
import { createLogger } from '../logger.ts'
import { DEFAULT_DEVNET_FILE } from './devnetFile.ts'
import { startDevnet, type Devnet } from './startDevnet.ts'

export const DEVNET_USAGE = `usage: shardmesh devnet [--port N] [--json] [--out <file>] [--fund <address>[,<address>…]] [--block-time S] [--blocks-per-epoch N] [--keep-history]
       anvil on 127.0.0.1 with AgentRegistry, RewardPool and the precompile stand-ins; prints the RPC URL,
       chain id and addresses (--json: one JSON object), writes them to --out (default ${DEFAULT_DEVNET_FILE}),
       and runs until SIGINT/SIGTERM. anvil keeps no historical state (reads at past blocks fail; blocks, receipts
       and logs stay) so its memory stays flat; --keep-history keeps every block's state.`

const optionsSchema = z.object({
  port: z.coerce.number().int().min(1).max(65535).optional(),
  json: z.boolean().default(false),
  out: z.string().default(DEFAULT_DEVNET_FILE),
  fund: z
    .string()
    .optional()
    .transform((s, ctx) => {
      const list = (s ?? '').split(',').map((a) => a.trim()).filter(Boolean)
      const bad = list.find((a) => !/^0x[0-9a-fA-F]{40}$/.test(a))
      if (bad) {
        ctx.addIssue({ code: 'custom', message: `"${bad}" is not an address` })
        return z.NEVER
      }
      return list.map((a) => getAddress(a)) as Address[]
    }),
  blockTime: z.coerce.number().int().min(0).default(1),
  blocksPerEpoch: z.coerce.number().int().min(1).default(60),
  keepHistory: z.boolean().default(false),
})

export type DevnetOptions = z.infer<typeof optionsSchema>

export function parseDevnetArgs(argv: string[]): DevnetOptions {
  const { values, positionals } = parseArgs({
    args: argv,
    options: {
      port: { type: 'string' },
      json: { type: 'boolean' },
      out: { type: 'string' },
      fund: { type: 'string' },
      'block-time': { type: 'string' },
      'blocks-per-epoch': { type: 'string' },
      'keep-history': { type: 'boolean' },
    },
    strict: true,
    allowPositionals: true,
  })
  if (positionals.length) throw new UsageError(`devnet takes no arguments, got "${positionals.join(' ')}"`)
  return parseOptions(optionsSchema, { ...values, blockTime: values['block-time'], blocksPerEpoch: values['blocks-per-epoch'], keepHistory: values['keep-history'] })
}

/** The summary `shardmesh devnet` prints (and `--json` prints as one object). */
export function describeDevnet(devnet: Devnet, out: string) {
  return {
    rpcUrl: devnet.rpcUrl,
    chainId: devnet.chainId,
    contracts: devnet.contracts,
    precompiles: devnet.precompiles,
    verifyInferenceLayout: devnet.file.verifyInferenceLayout,
    blocksPerEpoch: devnet.file.blocksPerEpoch,
    accounts: { deployer: devnet.accounts.deployer.address, oracle: devnet.accounts.oracle.address },
    addressesFile: out,
  }
}

/** Starts the devnet, prints it, and keeps it up until SIGINT/SIGTERM. */
export async function runDevnet(opts: DevnetOptions): Promise<void> {
  const logger = createLogger('shardmesh:devnet', opts.json ? 'warn' : undefined)
  // handlers first: a signal during startup must still stop anvil
  const stopped = new AbortController()
  const onSignal = () => stopped.abort()
  process.once('SIGINT', onSignal)
  process.once('SIGTERM', onSignal)
  const devnet = await startDevnet({
    port: opts.port,
    out: opts.out,
    fund: opts.fund,
    fundWei: parseEther('100'),
    blockTime: opts.blockTime,
    blocksPerEpoch: opts.blocksPerEpoch,
    pruneHistory: !opts.keepHistory,
    logger,
    signal: stopped.signal,
  })
  const summary = describeDevnet(devnet, opts.out)
  if (opts.json) {
    process.stdout.write(JSON.stringify(summary) + '\n')
  } else {
    process.stdout.write(
      [
        `devnet up (anvil, ${opts.blockTime ? `a block every ${opts.blockTime} s and one per transaction` : 'a block per transaction'}; an epoch is ${opts.blocksPerEpoch} blocks)`,
        `  RPC URL          ${summary.rpcUrl}`,
        `  chain id         ${summary.chainId}`,
        `  AgentRegistry    ${summary.contracts.agentRegistry}`,
        `  RewardPool       ${summary.contracts.rewardPool}`,
        `  precompiles      verifyInference ${summary.precompiles.verifyInference} (${summary.verifyInferenceLayout}), agentRegister ${summary.precompiles.agentRegister},`,
        `                   agentHeartbeat ${summary.precompiles.agentHeartbeat}, claim ${summary.precompiles.claimReward}`,
        `  owner            ${summary.accounts.deployer} (anvil account 0)`,
        `  oracle           ${summary.accounts.oracle} (anvil account 1)`,
        ...(opts.fund.length ? [`  funded           ${opts.fund.join(', ')} (+100 ETH each)`] : []),
        `  addresses file   ${opts.out}`,
        'Ctrl-C stops it.',
      ].join('\n') + '\n',
    )
  }
  if (!stopped.signal.aborted) await new Promise((resolve) => stopped.signal.addEventListener('abort', resolve, { once: true }))
  await devnet.close()
}
