/** Test cleanups that run last-in, first-out, like Go's t.Cleanup. */
import type { TestContext } from 'node:test'

const cleanupStacks = new WeakMap<TestContext, Array<() => unknown>>()

/**
 * Runs `cleanup` when the test ends, BEFORE the cleanups registered earlier (last in, first out, like Go's
 * t.Cleanup), so a database closes before its directory is deleted or its server database dropped.
 * `t.after` alone runs hooks first in, first out. Every cleanup runs even if one fails.
 */
export function defer(t: TestContext, cleanup: () => unknown): void {
  let stack = cleanupStacks.get(t)
  if (stack === undefined) {
    const created: (() => unknown)[] = []
    cleanupStacks.set(t, created)
    t.after(async () => {
      const failures: unknown[] = []
      for (const run of created.reverse()) {
        await Promise.resolve()
          .then(run)
          .catch((err: unknown) => failures.push(err))
      }
      if (failures.length === 1) throw failures[0]
      if (failures.length > 1) throw new AggregateError(failures, 'several test cleanups failed')
    })
    stack = created
  }
  stack.push(cleanup)
}
