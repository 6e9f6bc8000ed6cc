/**
 * How to start a child Node process on a module of this package: from the sources in a checkout (`.ts`)
 * through tsx (a development dependency), from the compiled package (`.js`) as it is; a user's module given
 * as `.ts` (a rehearsal consumer, a reconciliation file) needs tsx installed beside it.
 *
 * @module
 */

/** Node's arguments before the script for `modules` (the child's entry and any module it will import). */
export function loaderArgs(...modules: ReadonlyArray<string | undefined>): string[] {
  return modules.some((m) => m !== undefined && /\.[mc]?tsx?$/.test(m)) ? ['--import', 'tsx'] : []
}
