import { pino, type Logger } from 'pino'

/** A named structured logger (JSON lines on stderr); `LOG_LEVEL` sets the level, `silent` in tests. */
export function createLogger(name: string, level = process.env.LOG_LEVEL ?? 'info'): Logger {
  return pino({ name, level }, pino.destination(2))
}

export type { Logger }
