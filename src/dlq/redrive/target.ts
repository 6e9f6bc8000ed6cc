/**
 * Where a replay goes: the one schema of a target, shared by the HTTP API (its request bodies and OpenAPI
 * document), the CLI and the library ({@link parseTarget}), so they accept exactly the same targets.
 * Its limits are Kafka's and the runtime's: a topic name as Kafka allows it, a partition as int32, a tier
 * of at most {@link MAX_RETRY_TIERS} (a consumer has no more), a service name as the consumer option.
 *
 * @module
 */
import Type from 'typebox'
import Value from 'typebox/value'
import { invalidArgument } from '../../errors.js'
import { MAX_RETRY_TIERS } from '../../failure/tier-record.js'
import { NameSchema } from '../../util/names.js'
import type { RedriveTarget } from './types.js'

/** The largest partition number Kafka's protocol can carry (int32). */
const MAX_PARTITION = 0x7fffffff

const Branches = {
  origin: Type.Object({ kind: Type.Literal('origin') }, { additionalProperties: false }),
  'retry-tier': Type.Object(
    {
      kind: Type.Literal('retry-tier'),
      tier: Type.Integer({ minimum: 1, maximum: MAX_RETRY_TIERS }),
      service: NameSchema(),
    },
    { additionalProperties: false },
  ),
  topic: Type.Object(
    {
      kind: Type.Literal('topic'),
      topic: NameSchema(),
      partition: Type.Optional(Type.Integer({ minimum: 0, maximum: MAX_PARTITION })),
    },
    { additionalProperties: false },
  ),
} as const

/** The schema of a replay target (the API's `target` field). */
export const TargetSchema = Type.Union([Branches.origin, Branches['retry-tier'], Branches.topic], {
  description: 'where to replay: the origin topic and partition from the headers (default), a retry tier of a service, or a topic (and partition)',
})

/** Validates a target by {@link TargetSchema} (LL_ARGUMENT_INVALID naming the field); undefined → origin. */
export function parseTarget(input: unknown): RedriveTarget {
  if (input === undefined || input === null) return { kind: 'origin' }
  if (typeof input !== 'object' || Array.isArray(input)) throw invalidArgument('target must be an object', { field: 'target' })
  const kind = (input as { kind?: unknown }).kind
  if (typeof kind !== 'string' || !Object.hasOwn(Branches, kind)) throw invalidArgument(`target.kind must be ${Object.keys(Branches).join(', ')}`, { field: 'target.kind' })
  const schema = Branches[kind as keyof typeof Branches]
  for (const e of Value.Errors(schema, input)) {
    const params = e.params as { additionalProperties?: string[]; requiredProperties?: string[] }
    if (e.keyword === 'additionalProperties' && params.additionalProperties?.[0] !== undefined) {
      throw invalidArgument(`target.${params.additionalProperties[0]} is not a field of a ${kind} target`, { field: `target.${params.additionalProperties[0]}` })
    }
    if (e.keyword === 'required' && params.requiredProperties?.[0] !== undefined) {
      throw invalidArgument(`target.${params.requiredProperties[0]} is required for a ${kind} target`, { field: `target.${params.requiredProperties[0]}` })
    }
    const field = `target${e.instancePath.replaceAll('/', '.')}`
    throw invalidArgument(`${field} ${e.message}${field === 'target.topic' || field === 'target.service' ? ' (letters, digits, . _ -; at most 249)' : ''}`, { field })
  }
  return structuredClone(input) as RedriveTarget
}
