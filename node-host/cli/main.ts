import { GENERATE_USAGE, parseGenerateArgs, runGenerate } from './generateCommand.ts'
import { UsageError } from './usageError.ts'
import { takeLogLevel } from './logLevelOption.ts'
import { takeThreads } from './threadsOption.ts'
import { SERVE_USAGE, parseServeArgs, runServe } from './serveCommand.ts'
import { START_USAGE, parseStartArgs, runStart } from './startCommand.ts'
import { LOCAL_USAGE, runLocalNetwork } from './localNetwork.ts'
import { ORACLE_USAGE, parseOracleArgs, runOracle } from './oracleCommand.ts'
import { DEVNET_USAGE, parseDevnetArgs, runDevnet } from '../chain/devnetCommand.ts'
import { APP_USAGE, parseAppArgs, runApp } from '../app/appCommand.ts'
import { EARNINGS_USAGE, parseEarningsArgs, runEarnings } from './earningsCommand.ts'
import { REWARDS_USAGE, parseClaimArgs, parseRewardsArgs, runClaim, runRewards } from '../chain/rewardsCommand.ts'
import { FARM_USAGE, runFarmCommand } from '../farm/farmCommand.ts'
import { ORIGIN_USAGE, parseOriginArgs, runOrigin } from './originCommand.ts'

const USAGE = `shardmesh: LLM inference over shards of layers on ONNX Runtime, peer to peer.

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

${GENERATE_USAGE}
${SERVE_USAGE}
${START_USAGE}
${ORIGIN_USAGE}
${ORACLE_USAGE}
${LOCAL_USAGE}
${DEVNET_USAGE}
${APP_USAGE}
${EARNINGS_USAGE}
${REWARDS_USAGE}
${FARM_USAGE}

every command: --log-level fatal|error|warn|info|debug|trace|silent (or LOG_LEVEL; default info). Logs go to
stderr as pino JSON lines, pretty-printed when stdout is a terminal (LOG_FORMAT=json|pretty decides instead).
every command that runs the engine: --threads <n> (or SHARDMESH_THREADS): ONNX Runtime threads per shard session
(default: every core; host processes that a command starts inherit it).`

async function main(args: string[]): Promise<number> {
  const argv = takeThreads(takeLogLevel(args))
  const [command, ...rest] = argv
  switch (command) {
    case 'generate':
      await runGenerate(parseGenerateArgs(rest))
      return 0
    case 'serve':
      await runServe(parseServeArgs(rest))
      return new Promise<number>(() => {}) // runs until a signal stops it
    case 'local':
      await runLocalNetwork(rest)
      return 0
    case 'start':
      await runStart(parseStartArgs(rest))
      return new Promise<number>(() => {})
    case 'origin':
      await runOrigin(parseOriginArgs(rest))
      return new Promise<number>(() => {})
    case 'oracle':
      await runOracle(parseOracleArgs(rest))
      return new Promise<number>(() => {})
    case 'app':
      await runApp(parseAppArgs(rest))
      return new Promise<number>(() => {})
    case 'earnings':
      await runEarnings(parseEarningsArgs(rest))
      return 0
    case 'rewards':
      await runRewards(parseRewardsArgs(rest))
      return 0
    case 'claim':
      await runClaim(parseClaimArgs(rest))
      return 0
    case 'farm':
      return runFarmCommand(rest)
    case 'devnet':
      await runDevnet(parseDevnetArgs(rest))
      return 0
    case undefined:
    case 'help':
    case '--help':
    case '-h':
      process.stdout.write(`${USAGE}\n`)
      return 0
    default:
      throw new UsageError(`unknown command "${command}"`)
  }
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (e: unknown) => {
    const err = e as Error
    process.stderr.write(`shardmesh: ${err.message}\n`)
    if (err instanceof UsageError || (err as { code?: string }).code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION') process.stderr.write(`${USAGE}\n`)
    process.exit(err instanceof UsageError ? 2 : 1)
  },
)
