import { UsageError } from './usageError.ts'
import { takeLogLevel } from './logLevelOption.ts'
import { takeThreads } from './threadsOption.ts'
import { reexecWithServerFlags, SERVER_COMMANDS } from './serverNodeFlags.ts'

/** The whole usage text: every command's module is imported for it. */
async function usage(): Promise<string> {
  const [g, sv, st, or, ora, lo, dv, ap, ea, rw, fa] = await Promise.all([
    import('./generateCommand.ts'),
    import('./serveCommand.ts'),
    import('./startCommand.ts'),
    import('./originCommand.ts'),
    import('./oracleCommand.ts'),
    import('./localNetwork.ts'),
    import('../chain/devnetCommand.ts'),
    import('../app/appCommand.ts'),
    import('./earningsCommand.ts'),
    import('../chain/rewardsCommand.ts'),
    import('../farm/farmCommand.ts'),
  ])
  return `shardmesh: LLM inference over shards of layers on ONNX Runtime, peer to peer.

commands:
  generate   run a prompt through a model's shards in this process
  serve      serve a model over the Plumise agent API and the OpenAI API, shards in this process
  local      run a whole network on this machine (what npm start does)
  start      run a node host: a layer range of a model on the libp2p mesh (and the HTTP API as origin)
  origin     run an origin (HTTP API) and relay without layers, routing over the peers the Oracle lists
  oracle     run the Oracle: assigns layer ranges, Plumise Oracle HTTP API, state in SQLite
  devnet     run a local chain (anvil) with the project's contracts: RPC URL, chain id, addresses
  app        serve the contributor web app against a network (its Oracle, relays and chain)
  earnings   what the Oracle booked for this host: per task, per day, totals
  rewards    print the RewardPool's epoch, an address's pending reward and its past epochs and claims
  claim      claim the configured wallet's pending reward
  farm       run many headless contributor pages on this machine, supervised (Chromium via Playwright)

${g.GENERATE_USAGE}
${sv.SERVE_USAGE}
${st.START_USAGE}
${or.ORIGIN_USAGE}
${ora.ORACLE_USAGE}
${lo.LOCAL_USAGE}
${dv.DEVNET_USAGE}
${ap.APP_USAGE}
${ea.EARNINGS_USAGE}
${rw.REWARDS_USAGE}
${fa.FARM_USAGE}

every command: --log-level fatal|error|warn|info|debug|trace|silent (or LOG_LEVEL; default info). Logs go to
stderr as pino JSON lines, pretty-printed when stdout is a terminal (LOG_FORMAT=json|pretty decides instead).
every command that runs the engine: --threads <n> (or SHARDMESH_THREADS): ONNX Runtime threads per shard session
(default: every core; host processes that a command starts inherit it).`
}

// Each command's module is imported when that command runs: a host process does not load the
// farm's Playwright, the Oracle's SQLite or the app server (seconds of start-up and tens of MB each).
async function main(args: string[]): Promise<number> {
  const argv = takeThreads(takeLogLevel(args))
  const [command, ...rest] = argv
  if (command && SERVER_COMMANDS.has(command)) reexecWithServerFlags()
  switch (command) {
    case 'generate': {
      const { runGenerate, parseGenerateArgs } = await import('./generateCommand.ts')
      await runGenerate(parseGenerateArgs(rest))
      return 0
    }
    case 'serve': {
      const { runServe, parseServeArgs } = await import('./serveCommand.ts')
      await runServe(parseServeArgs(rest))
      return new Promise<number>(() => {}) // runs until a signal stops it
    }
    case 'local': {
      const { runLocalNetwork } = await import('./localNetwork.ts')
      await runLocalNetwork(rest)
      return 0
    }
    case 'start': {
      const { runStart, parseStartArgs } = await import('./startCommand.ts')
      await runStart(parseStartArgs(rest))
      return new Promise<number>(() => {})
    }
    case 'origin': {
      const { runOrigin, parseOriginArgs } = await import('./originCommand.ts')
      await runOrigin(parseOriginArgs(rest))
      return new Promise<number>(() => {})
    }
    case 'oracle': {
      const { runOracle, parseOracleArgs } = await import('./oracleCommand.ts')
      await runOracle(parseOracleArgs(rest))
      return new Promise<number>(() => {})
    }
    case 'app': {
      const { runApp, parseAppArgs } = await import('../app/appCommand.ts')
      await runApp(parseAppArgs(rest))
      return new Promise<number>(() => {})
    }
    case 'earnings': {
      const { runEarnings, parseEarningsArgs } = await import('./earningsCommand.ts')
      await runEarnings(parseEarningsArgs(rest))
      return 0
    }
    case 'rewards': {
      const { runRewards, parseRewardsArgs } = await import('../chain/rewardsCommand.ts')
      await runRewards(parseRewardsArgs(rest))
      return 0
    }
    case 'claim': {
      const { runClaim, parseClaimArgs } = await import('../chain/rewardsCommand.ts')
      await runClaim(parseClaimArgs(rest))
      return 0
    }
    case 'farm': {
      const { runFarmCommand } = await import('../farm/farmCommand.ts')
      return runFarmCommand(rest)
    }
    case 'devnet': {
      const { runDevnet, parseDevnetArgs } = await import('../chain/devnetCommand.ts')
      await runDevnet(parseDevnetArgs(rest))
      return 0
    }
    case undefined:
    case 'help':
    case '--help':
    case '-h':
      process.stdout.write(`${await usage()}\n`)
      return 0
    default:
      throw new UsageError(`unknown command "${command}"`)
  }
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  async (e: unknown) => {
    const err = e as Error
    process.stderr.write(`shardmesh: ${err.message}\n`)
    if (err instanceof UsageError || (err as { code?: string }).code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION') process.stderr.write(`${await usage()}\n`)
    process.exit(err instanceof UsageError ? 2 : 1)
  },
)
