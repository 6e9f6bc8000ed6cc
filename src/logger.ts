/**
 * Structured logging. Library code never uses `console`: every component takes a pino logger
 * (or makes a silent one) and derives namespaced children from it.
 *
 * @module
 */
import { pino, type Logger } from 'pino'

export type { Logger }

/**
 * The default logger: JSON to stderr (stdout stays free for CLI output), level from `LIFELINE_LOG_LEVEL`
 * (default `info`).
 */
export function createLogger(options: { name?: string; level?: string } = {}): Logger {
  return pino(
    {
      name: options.name ?? 'lifeline',
      level: options.level ?? process.env.LIFELINE_LOG_LEVEL ?? 'info',
    },
    pino.destination({ fd: 2, sync: false }),
  )
}

/** A logger that writes nothing: the default for library components given no logger. */
export function silentLogger(): Logger {
  return pino({ level: 'silent' })
}
