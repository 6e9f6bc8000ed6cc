/**
 * A lock file for a data directory that only one process may open (PGlite has no lock of its own).
 * A lock left by a process that no longer runs is stale and taken over.
 */
import { closeSync, openSync, readFileSync, rmSync, writeSync } from 'node:fs'
import { hostname } from 'node:os'
import { LifelineError } from '../errors.js'

export interface LockOwner {
  pid: number
  hostname: string
  since: string
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (err) {
    // EPERM: it exists but belongs to someone else.
    return (err as NodeJS.ErrnoException).code === 'EPERM'
  }
}

function readOwner(path: string): LockOwner | undefined {
  try {
    const parsed: unknown = JSON.parse(readFileSync(path, 'utf8'))
    if (parsed !== null && typeof parsed === 'object' && typeof (parsed as LockOwner).pid === 'number') {
      return parsed as LockOwner
    }
    return undefined
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined
    // A torn or garbage lock file is treated as stale.
    return { pid: -1, hostname: '', since: '' }
  }
}

/** Takes the lock at `path` or throws LL_DB_LOCKED naming the live owner. Returns the release function. */
export function acquireLockFile(path: string): () => void {
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      const fd = openSync(path, 'wx')
      const owner: LockOwner = { pid: process.pid, hostname: hostname(), since: new Date().toISOString() }
      writeSync(fd, JSON.stringify(owner))
      closeSync(fd)
      let released = false
      return () => {
        if (released) return
        released = true
        const current = readOwner(path)
        if (current?.pid === process.pid) rmSync(path, { force: true })
      }
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err
      const owner = readOwner(path)
      const sameHost = owner === undefined || owner.hostname === '' || owner.hostname === hostname()
      if (owner !== undefined && owner.pid > 0 && (!sameHost || processAlive(owner.pid))) {
        throw new LifelineError(
          'LL_DB_LOCKED',
          `database directory is locked by pid ${owner.pid} on ${owner.hostname} since ${owner.since} (${path}); stop that process or use another data directory`,
          { details: { path, owner } },
        )
      }
      rmSync(path, { force: true }) // stale: its owner is gone
    }
  }
  throw new LifelineError('LL_DB_LOCKED', `could not take the lock file ${path}`)
}

/**
 * Removes the lock at `path` if this process holds it: for a database whose holder in this process is gone
 * without releasing it (the database thread died). A lock of another process is left alone.
 */
export function releaseOwnLockFile(path: string): void {
  if (readOwner(path)?.pid === process.pid) rmSync(path, { force: true })
}
