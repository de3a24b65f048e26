import { THREADS_ENV, ThreadsError, engineThreads, parseThreads } from '../engine/engineThreads.ts'
import { UsageError } from './usageError.ts'

/**
 * Takes `--threads <n>` / `--threads=<n>` out of any command's arguments and sets SHARDMESH_THREADS,
 * which every engine session of the command, and every host process it starts, reads.
 */
export function takeThreads(argv: string[], env: Record<string, string | undefined> = process.env): string[] {
  const rest: string[] = []
  try {
    for (let i = 0; i < argv.length; i++) {
      const arg = argv[i]!
      let value: string | undefined
      if (arg === '--threads') {
        value = argv[++i]
        if (value === undefined) throw new UsageError('--threads needs a number')
      } else if (arg.startsWith('--threads=')) value = arg.slice('--threads='.length)
      else {
        rest.push(arg)
        continue
      }
      env[THREADS_ENV] = String(parseThreads(value, '--threads'))
    }
    engineThreads(env)
  } catch (e) {
    if (e instanceof ThreadsError) throw new UsageError(e.message)
    throw e
  }
  return rest
}
