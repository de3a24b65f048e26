import { LogLevelError, parseLogLevel } from '../logger.ts'
import { UsageError } from './usageError.ts'

/**
 * Takes `--log-level <level>` / `--log-level=<level>` out of the arguments (any command, any place)
 * and sets LOG_LEVEL, which every logger, and every process a command starts, reads.
 */
export function takeLogLevel(argv: string[], env: Record<string, string | undefined> = process.env): string[] {
  const rest: string[] = []
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!
    let value: string | undefined
    if (arg === '--log-level') {
      value = argv[++i]
      if (value === undefined) throw new UsageError('--log-level needs a level')
    } else if (arg.startsWith('--log-level=')) value = arg.slice('--log-level='.length)
    else {
      rest.push(arg)
      continue
    }
    try {
      env.LOG_LEVEL = parseLogLevel(value)
    } catch (e) {
      if (e instanceof LogLevelError) throw new UsageError(`--log-level: ${e.message}`)
      throw e
    }
  }
  if (env.LOG_LEVEL !== undefined) {
    try {
      env.LOG_LEVEL = parseLogLevel(env.LOG_LEVEL)
    } catch (e) {
      if (e instanceof LogLevelError) throw new UsageError(`LOG_LEVEL: ${e.message}`)
      throw e
    }
  }
  return rest
}
