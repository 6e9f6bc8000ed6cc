/**
 * The process-wide registry of definitions by name, which the CLI and schedulers look names up in.
 *
 * @module
 */
import { LifelineError } from '../../errors.js'
import { isReconciliation, type AnyReconciliation } from './define.js'

const registered = new Map<string, AnyReconciliation>()

/** Registers definitions by name (the CLI and schedulers look them up); the same name twice is refused unless it is the same definition. */
export function registerReconciliation(...defs: AnyReconciliation[]): void {
  for (const def of defs) {
    if (!isReconciliation(def)) throw new LifelineError('LL_ARGUMENT_INVALID', 'registerReconciliation takes definitions made by defineReconciliation()')
    const known = registered.get(def.name)
    if (known !== undefined && known !== def) throw new LifelineError('LL_ARGUMENT_INVALID', `a different reconciliation named ${def.name} is already registered`, { details: { name: def.name } })
    registered.set(def.name, def)
  }
}

export function unregisterReconciliation(name: string): boolean {
  return registered.delete(name)
}

/** The registered definitions, by name. */
export function listReconciliations(): AnyReconciliation[] {
  return [...registered.values()].sort((a, b) => a.name.localeCompare(b.name))
}

/** The definition named `name` among `known` (default: the registered ones); LL_RECONCILE listing the known names when there is none. */
export function getReconciliation(name: string, known: readonly AnyReconciliation[] = listReconciliations()): AnyReconciliation {
  const def = known.find((d) => d.name === name)
  if (def !== undefined) return def
  const names = known.map((d) => d.name).sort()
  throw new LifelineError('LL_RECONCILE', `unknown reconciliation ${JSON.stringify(name)}; known: ${names.length === 0 ? '(none)' : names.join(', ')}`, { details: { name, known: names } })
}
