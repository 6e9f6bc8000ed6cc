/**
 * The actors the DLQ processor itself writes into record histories and the audit log, besides token
 * names. A token may never take one of these names ({@link isSystemActorName}): an audit row by `indexer`
 * must mean the indexer.
 *
 * @module
 */

/** Changes the indexer makes (linking a record that came back). */
export const INDEXER_ACTOR = 'indexer'
/** Requests without a valid token (refusals). */
export const ANONYMOUS_ACTOR = 'anonymous'
/** The processor's own housekeeping (expiring approvals). */
export const PROCESSOR_ACTOR = 'processor'
/** A bulk job's sends: `redrive:<job id>`. */
export const jobActor = (jobId: string): string => `redrive:${jobId}`
/** The command line's database commands: `cli:<OS user>`. */
export const cliActor = (user: string | undefined): string => `cli:${user || 'unknown'}`

/** Names no token may take (compared case-insensitively): the actors above and the prefixes of the composed ones. */
export const SYSTEM_ACTOR_NAMES: readonly string[] = Object.freeze([INDEXER_ACTOR, ANONYMOUS_ACTOR, PROCESSOR_ACTOR, 'redrive', 'cli'])

export function isSystemActorName(name: string): boolean {
  return SYSTEM_ACTOR_NAMES.includes(name.toLowerCase())
}
