/**
 * Lifeline's one error catalogue.
 *
 * Every error Lifeline raises is a {@link LifelineError} with a stable `code` from {@link ErrorCodes}.
 * Classify by `code`, never by message text: failures cross process boundaries in Kafka headers,
 * and only the code survives that trip unchanged. Every code is documented in `docs/errors.md`
 * (a test checks that the catalogue and the document agree).
 *
 * @module
 */

/** The catalogue: code → default retriable flag and a one-line meaning (mirrored in docs/errors.md). */
export const ErrorCodes = {
  LL_OPTIONS_INVALID: { retriable: false, summary: 'Options failed schema validation; the message names the option path.' },
  LL_KAFKA_CONNECT: { retriable: true, summary: 'The Kafka client could not connect to the bootstrap brokers.' },
  LL_KAFKA_PRODUCE: { retriable: true, summary: 'A produce request was not acknowledged by the broker.' },
  LL_KAFKA_CONSUME: { retriable: true, summary: 'Fetching records from the broker failed.' },
  LL_KAFKA_COMMIT: { retriable: true, summary: 'Committing consumer-group offsets failed.' },
  LL_KAFKA_ADMIN: { retriable: true, summary: 'An admin request (create/delete/describe topics, offsets) failed.' },
  LL_KAFKA_CLOSED: { retriable: false, summary: 'A Kafka client was used after close().' },
  LL_DB_CONNECT: { retriable: true, summary: 'The database could not be opened or reached.' },
  LL_DB_LOCKED: { retriable: false, summary: 'The embedded database directory is locked by another live process.' },
  LL_DB_QUERY: { retriable: false, summary: 'A SQL statement failed; the cause carries the driver error.' },
  LL_DB_MIGRATION: { retriable: false, summary: 'A migration failed, or an applied migration file was changed after it ran.' },
  LL_DB_CLOSED: { retriable: false, summary: 'A database executor was used after close().' },
  LL_TOPIC_INVALID: { retriable: false, summary: 'A topic Lifeline needs is missing or unfit (e.g. a DLQ with fewer partitions than its source).' },
  LL_DEAD_LETTER: { retriable: true, summary: 'Writing a record to its dead-letter topic failed (the partition pauses and the write is retried), or the onDeadLetter hook failed (retried up to retry.maxAttempts).' },
  LL_CONSUMER_CLOSE: { retriable: false, summary: 'close() ran every step, but some failed; details.errors lists them.' },
  LL_CONSUMER_STATE: { retriable: false, summary: 'A consumer method was called in the wrong state (e.g. start() twice, or after close()).' },
  LL_ABORTED: { retriable: false, summary: 'A wait was cancelled by close() or an AbortSignal.' },
  LL_ARGUMENT_INVALID: { retriable: false, summary: 'A function was called outside its contract (e.g. a negative or fractional offset): a bug in the caller.' },
  LL_DECODE: { retriable: false, summary: 'A record key or value could not be decoded (bad bytes for its format); retrying cannot help.' },
  LL_SCHEMA_INVALID: { retriable: false, summary: 'A decoded record failed schema validation; retrying cannot help.' },
  LL_SEQUENCE_INVALID: { retriable: false, summary: 'The sequence extractor threw or returned something that is not a non-negative safe integer; the record is dead-lettered.' },
  LL_SEQUENCE_GAP: { retriable: false, summary: "A key's sequence gap stayed open past sequence.timeoutMs under the 'dead-letter' policy; the records held behind it are dead-lettered." },
  LL_SEQUENCE_LATE: { retriable: false, summary: 'A record arrived after its sequence was skipped by a gap policy (or an operator releasing the gap): a late straggler, dead-lettered rather than applied out of order or dropped.' },
  LL_RETRY_TIER: { retriable: true, summary: 'Writing a record to its retry-tier topic failed (the partition pauses and the write is retried).' },
  LL_STATE: { retriable: true, summary: 'Reading or writing ordering state (parked keys, parked records, sequences) in the database failed; the partition pauses and the step is retried.' },
  LL_KEY_NOT_PARKED: { retriable: false, summary: 'A parked-key operation named a key that is not parked (or no longer has the expected head).' },
  LL_TRANSACTION: { retriable: true, summary: 'A Kafka transaction failed (the pipeline aborts it: its records stay invisible to read_committed readers and its input is processed again; `details.kind` `timed-out`: the broker aborted it for outliving transaction.timeout.ms, and abort() re-initialises the producer), the transactional producer hit a fatal error, or it was used out of order (e.g. send() before begin()).' },
  LL_FENCED: { retriable: false, summary: 'A transactional producer was fenced by a newer instance with the same transactional.id (a zombie); it must stop.' },
  LL_INBOX: { retriable: true, summary: 'The inbox transaction (event-id claim plus the handler\'s writes) failed; nothing of it was committed and the record is retried.' },
  LL_COMPENSATION: { retriable: true, summary: 'A compensation step failed; it is retried and each attempt is recorded on the failure record.' },
  LL_RECONCILE: { retriable: false, summary: 'A reconciliation could not run (unknown name, bad definition, or a source/target read failed); the run is recorded as failed.' },
  LL_NOT_FOUND: { retriable: false, summary: 'A record an operator named (failure record, reconciliation run, ...), or an API endpoint, does not exist (HTTP 404).' },
  LL_DLQ_CONFLICT: { retriable: false, summary: "A DLQ action conflicts with the state of what it names (HTTP 409): a record's status (replaying a record already replayed without force, editing or discarding a final record), a job's (resuming a job that is not paused, running a job another processor runs), an approval no longer pending, a token name already taken." },
  LL_LISTEN: { retriable: false, summary: 'An HTTP server (the metrics and health endpoints) could not listen on its host and port (e.g. the port is taken).' },
  LL_NOTIFY: { retriable: true, summary: 'A webhook notification could not be delivered (network error, timeout or an HTTP error status); it is retried with backoff, then dropped and counted.' },
  LL_DECRYPT: { retriable: false, summary: 'An encrypted DLQ field could not be decrypted for its record: an unknown key id, a wrong key, a tampered value, or a value moved from another topic or field (enc:v2 binds each value to both); the replay is refused and nothing is sent.' },
  LL_UNAUTHORIZED: { retriable: false, summary: 'The request carries no valid credential: no token, or one that is unknown, revoked or expired (HTTP 401).' },
  LL_FORBIDDEN: { retriable: false, summary: 'The caller may not do this (HTTP 403): its role is too low for the endpoint or for what it asked (a replay target outside the allow-list, force, a bulk redrive above the threshold), or four-eyes refuses it (deciding on a request of the same owner).' },
  LL_PAYLOAD_TOO_LARGE: { retriable: false, summary: 'A request body is larger than the API accepts (maxBodyBytes, 1 MiB by default); nothing of it was read further (HTTP 413).' },
  LL_INTERNAL: { retriable: false, summary: 'An unexpected error (a bug): the API answers with this code only, and the processor logs the cause.' },
  LL_REDRIVE_LIMIT: { retriable: false, summary: 'A redrive was refused: the record reached the maximum number of redrives, or its lineage came back to the DLQ that many times (loop detection); force overrides.' },
  LL_FAULT: { retriable: false, summary: 'A fault could not be injected or healed (a network namespace, a veth link, a TCP proxy port): the rehearsal stops rather than report faults that did not happen.' },
  LL_REHEARSAL: { retriable: false, summary: 'A rehearsal could not run: bad options, a consumer module that does not follow the contract (docs/rehearsal.md), or a setup step (topics, database, consumers) that failed.' },
} as const satisfies Record<string, { retriable: boolean; summary: string }>

export type ErrorCode = keyof typeof ErrorCodes

export interface LifelineErrorOptions {
  cause?: unknown
  /** Overrides the catalogue's default retriable flag for this instance. */
  retriable?: boolean
  /** Structured context for logs (never secrets: it is logged as is). */
  details?: Record<string, unknown>
}

/** The one base class of every error Lifeline raises. */
export class LifelineError extends Error {
  override readonly name: string = 'LifelineError'
  readonly code: ErrorCode
  readonly retriable: boolean
  readonly details: Readonly<Record<string, unknown>>

  constructor(code: ErrorCode, message: string, options: LifelineErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause })
    this.code = code
    this.retriable = options.retriable ?? ErrorCodes[code].retriable
    this.details = Object.freeze({ ...(options.details ?? {}) })
  }
}

/** True when `err` is a LifelineError, optionally with the given code. */
export function isLifelineError(err: unknown, code?: ErrorCode): err is LifelineError {
  return err instanceof LifelineError && (code === undefined || err.code === code)
}

/** Codes whose message carries a dependency's own text (the broker's, the database driver's). */
const FOREIGN_TEXT = /^LL_(KAFKA_|DB_|TRANSACTION$|FENCED$)/

/**
 * What of `err` may be shown to anyone who can read what it concerns (a record's status reason, an
 * approval's): the code, with Lifeline's own message unless the message carries a dependency's text
 * (Kafka's, the database driver's); anything that is not a LifelineError is an internal error. The full
 * error belongs in the log.
 */
export function publicErrorText(err: unknown): string {
  if (!isLifelineError(err)) return 'an internal error (details in the log)'
  if (FOREIGN_TEXT.test(err.code)) return `${err.code} (details in the log)`
  return `${err.code}: ${err.message}`
}


/**
 * An LL_ARGUMENT_INVALID error naming what was wrong (`details.field`): the one factory of the argument
 * checks the DLQ store, API and CLI share.
 */
export function invalidArgument(message: string, details: Record<string, unknown> = {}): LifelineError {
  return new LifelineError('LL_ARGUMENT_INVALID', message, { details })
}

/**
 * An LL_DLQ_CONFLICT error: the state of a record, job, approval or token refuses the change (the details
 * say which state): the one factory of the DLQ store's, redrive's and API's refusals.
 */
export function dlqConflict(message: string, details: Record<string, unknown> = {}): LifelineError {
  return new LifelineError('LL_DLQ_CONFLICT', message, { details })
}
