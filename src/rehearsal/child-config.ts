/** The settings the harness hands a member's child process (child.ts) in `LIFELINE_REHEARSAL_CHILD`. */

export interface ChildConfig {
  member: string
  logFile: string
  brokers: string[]
  groupId: string
  service: string
  topic: string
  dbUrl: string
  /** The consumer module (a path or file URL). */
  module: string
  sessionTimeoutMs: number
  commitIntervalMs: number
  retryDelaysMs: number[]
  /** Inside a network namespace: forward 127.0.0.1:<port> to <host>:<port> for each broker port. */
  forward?: { host: string; ports: number[] }
}

export const CHILD_ENV = 'LIFELINE_REHEARSAL_CHILD'
