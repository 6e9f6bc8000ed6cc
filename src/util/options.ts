/**
 * Options are defined once: a typebox schema, exported defaults, validation at construction with
 * messages that name the option path, then frozen.
 */
import type { TSchema, Static } from 'typebox'
import Value from 'typebox/value'
import { LifelineError } from '../errors.js'

/** `/a/b/0` → `a.b[0]` (the way a user wrote it in their options object). */
function optionPath(root: string, instancePath: string): string {
  let path = root
  for (const part of instancePath.split('/').slice(1)) {
    const key = part.replaceAll('~1', '/').replaceAll('~0', '~')
    path += /^\d+$/.test(key) ? `[${key}]` : `${path ? '.' : ''}${key}`
  }
  return path || '(options)'
}

/**
 * Validates `input` against `schema` and returns it frozen, or throws LL_OPTIONS_INVALID listing every
 * problem as `path: message`.
 */
export function validateOptions<S extends TSchema>(schema: S, input: unknown, root = ''): Readonly<Static<S>> {
  if (Value.Check(schema, input)) return Object.freeze(input as Static<S>)
  const problems: string[] = []
  for (const e of Value.Errors(schema, input)) {
    // typebox reports an extra property twice (once as `false` schema): keep the readable one.
    if (e.keyword === 'boolean') continue
    const params = e.params as { additionalProperties?: string[] }
    if (e.keyword === 'additionalProperties' && params.additionalProperties) {
      for (const extra of params.additionalProperties) problems.push(`${optionPath(root, `${e.instancePath}/${extra}`)}: unknown option`)
      continue
    }
    problems.push(`${optionPath(root, e.instancePath)}: ${e.message}`)
  }
  throw new LifelineError('LL_OPTIONS_INVALID', `invalid options: ${problems.join('; ')}`, { details: { problems } })
}
