/**
 * `lifeline/rehearsal`: the contract of a consumer module `lifeline rehearse --consumer` runs (docs/rehearsal.md).
 *
 * @module
 */
export type { RehearsalContext, RehearsalConsumerFactory } from '../rehearsal/contract.js'
export type { RehearsalEvent } from '../rehearsal/workload.js'
