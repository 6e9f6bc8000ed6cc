/**
 * The errors of the development launchers (`lifeline/dev`: the local Kafka broker or cluster, the private
 * PostgreSQL instance). They are not in the library's catalogue (`src/errors.ts`): a consumer, the DLQ
 * processor or a reconciliation never raises them, and an application that only imports `lifeline` never
 * meets them. Their codes keep the `LL_` prefix and are as stable as the catalogue's; docs/errors.md lists
 * them in their own table (generated, checked by a test).
 *
 * @module
 */

/** The launchers' codes: code → default retriable flag and a one-line meaning (mirrored in docs/errors.md). */
export const LauncherErrorCodes = {
  LL_LAUNCHER_JAVA_MISSING: { retriable: false, summary: 'The local broker launcher needs Java 17+ on PATH (or JAVA_HOME).' },
  LL_LAUNCHER_MAVEN_MISSING: { retriable: false, summary: 'The local broker launcher needs Maven (mvn) to resolve the broker jars.' },
  LL_LAUNCHER_RESOLVE: { retriable: true, summary: 'Maven could not resolve the Kafka broker jars.' },
  LL_LAUNCHER_PORT_BUSY: { retriable: false, summary: 'A requested broker or controller port is already in use.' },
  LL_LAUNCHER_START: { retriable: false, summary: 'A broker process exited or failed before it became ready; the message carries its log tail.' },
  LL_LAUNCHER_TIMEOUT: { retriable: true, summary: 'A broker did not become ready within the start timeout; the message carries its log tail.' },
  LL_LAUNCHER_NOT_RUNNING: { retriable: false, summary: 'No local broker is running in the given state directory.' },
  LL_PG_LAUNCHER: { retriable: false, summary: 'The private PostgreSQL instance could not be initialised, started or stopped: missing server binaries, an initdb or start failure (the message carries its log tail).' },
} as const satisfies Record<string, { retriable: boolean; summary: string }>

export type LauncherErrorCode = keyof typeof LauncherErrorCodes

/** An error of a development launcher, with a stable `code` from {@link LauncherErrorCodes}. */
export class LauncherError extends Error {
  override readonly name: string = 'LauncherError'
  readonly retriable: boolean
  readonly details: Readonly<Record<string, unknown>>

  constructor(
    readonly code: LauncherErrorCode,
    message: string,
    options: { cause?: unknown; details?: Record<string, unknown> } = {},
  ) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause })
    this.retriable = LauncherErrorCodes[code].retriable
    this.details = Object.freeze({ ...(options.details ?? {}) })
  }
}

/** True when `err` is a {@link LauncherError}, optionally with the given code. */
export function isLauncherError(err: unknown, code?: LauncherErrorCode): err is LauncherError {
  return err instanceof LauncherError && (code === undefined || err.code === code)
}
