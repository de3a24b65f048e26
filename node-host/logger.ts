import { createRequire } from 'node:module'
import { pino, type Logger } from 'pino'
import type PinoPretty from 'pino-pretty'

// Loaded only when logs are pretty-printed: services writing JSON never pay for it at start.
const require = createRequire(import.meta.url)
const loadPretty = () => require('pino-pretty') as typeof PinoPretty

/** The levels `--log-level` and `LOG_LEVEL` take. */
export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const
export type LogLevel = (typeof LOG_LEVELS)[number]

/** A level that is not one of LOG_LEVELS. */
export class LogLevelError extends Error {
  constructor(value: string) {
    super(`log level "${value}" is not one of ${LOG_LEVELS.join(', ')}`)
    this.name = 'LogLevelError'
  }
}

export function parseLogLevel(value: string): LogLevel {
  const level = value.trim().toLowerCase()
  if (!(LOG_LEVELS as readonly string[]).includes(level)) throw new LogLevelError(value)
  return level as LogLevel
}

/**
 * Whether logs are pretty-printed: `LOG_FORMAT=pretty|json` decides; otherwise pretty when stdout is
 * a terminal (a person watching), JSON lines when it is a pipe or a file (a collector reading).
 */
export function prettyLogs(env: Record<string, string | undefined> = process.env, stdoutIsTty = process.stdout.isTTY === true): boolean {
  if (env.LOG_FORMAT === 'pretty') return true
  if (env.LOG_FORMAT === 'json') return false
  return stdoutIsTty
}

/**
 * A named structured logger on stderr: pino JSON lines, or pino-pretty text on a terminal
 * (prettyLogs). The level is `level`, else `LOG_LEVEL` (set by every command's `--log-level`), else
 * info; `silent` in tests.
 */
export function createLogger(name: string, level?: string): Logger {
  const resolved = parseLogLevel(level ?? process.env.LOG_LEVEL ?? 'info')
  // Synchronous, in this thread: no worker to outlive the process or lose the last lines on exit.
  const destination = prettyLogs() ? loadPretty()({ destination: 2, sync: true, colorize: process.stderr.isTTY === true }) : pino.destination(2)
  return pino({ name, level: resolved }, destination)
}

export type { Logger }
