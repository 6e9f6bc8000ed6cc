/**
 * A member's log: one JSON line per handler invocation phase and consumer event, appended with a
 * synchronous write so that a `kill -9` loses nothing already written (the page cache keeps it).
 */
import { closeSync, openSync, readFileSync, writeSync, existsSync } from 'node:fs'
import type { MemberEntry } from './history.js'

/** Distributes Omit over a union (TypeScript's Omit collapses a union into its common fields). */
export type WithoutMember<T> = T extends unknown ? Omit<T, 'member' | 'at'> : never

export interface MemberLog {
  write(entry: WithoutMember<MemberEntry>): void
  close(): void
}

export function openMemberLog(file: string, member: string): MemberLog {
  const fd = openSync(file, 'a')
  let closed = false
  return {
    write(entry) {
      if (closed) return
      writeSync(fd, `${JSON.stringify({ ...entry, member, at: Date.now() })}\n`)
    },
    close() {
      if (closed) return
      closed = true
      closeSync(fd)
    },
  }
}

/** Reads a member log; a line cut short by a kill (the last one) is dropped. */
export function readMemberLog(file: string): MemberEntry[] {
  if (!existsSync(file)) return []
  const out: MemberEntry[] = []
  for (const line of readFileSync(file, 'utf8').split('\n')) {
    if (line === '') continue
    try {
      out.push(JSON.parse(line) as MemberEntry)
    } catch (err) {
      if (!(err instanceof SyntaxError)) throw err
    }
  }
  return out
}
