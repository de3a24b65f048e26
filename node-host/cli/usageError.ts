import type { z } from 'zod'

/** A mistake in the command line: printed with the usage, exit code 2. */
export class UsageError extends Error {
  constructor(message: string) {
    super(message)
    this.name = 'UsageError'
  }
}

/** Validates parsed flags against a schema; the first problem becomes a UsageError naming its flag. */
export function parseOptions<T>(schema: z.ZodType<T>, values: Record<string, unknown>): T {
  const parsed = schema.safeParse(values)
  if (parsed.success) return parsed.data
  const issue = parsed.error.issues[0]!
  const flag = issue.path.map((p) => `--${String(p).replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`).join('')
  throw new UsageError(`${flag}: ${issue.message}`)
}
