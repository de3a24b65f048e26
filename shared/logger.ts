/** The logging surface shared code needs; pino's loggers satisfy it, so do silent stubs. */
export type Logger = {
  debug(obj: object, msg?: string): void
  info(obj: object, msg?: string): void
  warn(obj: object, msg?: string): void
  error(obj: object, msg?: string): void
}

export const silentLogger: Logger = { debug() {}, info() {}, warn() {}, error() {} }
