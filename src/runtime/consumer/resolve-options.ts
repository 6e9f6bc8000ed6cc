/**
 * Options resolved once: the schema, the function-valued options JSON Schema cannot describe, the
 * cross-field rules, and every default — then frozen. Nothing else in the runtime reads a default.
 *
 * @module
 */
import { LifelineError } from '../../errors.js'
import type { SqlExecutor } from '../../store/executor.js'
import { validateOptions } from '../../util/options.js'
import { Masker } from '../../failure/masking.js'
import { exponential, fixed, type BackoffPolicy } from '../../retry/backoff.js'
import type { CircuitBreakerOptions } from '../../retry/circuit-breaker.js'
import type { ClassifyOptions } from '../../retry/classify.js'
import { resolveDecoder, withSchema } from '../decode.js'
import type { Ordering } from '../key-scheduler.js'
import { ConsumerOptionsSchema, consumerDefaults, dlqTopicName, functionOptions, type ConsumerOptions, type Decoder, type GapPolicy, type Handler, type LifelineMessage } from '../options.js'
import { retryTopicName } from '../../failure/tier-record.js'

export interface ResolvedSequence {
  extract: (message: LifelineMessage<unknown>) => number | bigint | null | undefined
  firstSequence: number | undefined
  timeoutMs: number
  policy: GapPolicy
}

/** Every option the runtime reads, with its default applied. Frozen. */
export interface ResolvedConsumerOptions {
  readonly source: ConsumerOptions<unknown>
  readonly brokers: string[]
  readonly groupId: string
  readonly service: string
  readonly topics: readonly string[]
  readonly handler: Handler<unknown>
  readonly decoder: Decoder<unknown>
  readonly ordering: Ordering
  readonly concurrency: number
  readonly atMostOnce: boolean
  readonly maxPerPartition: number
  readonly maxBytes: number
  /** In-place retries: the backoff between attempts. */
  readonly backoff: BackoffPolicy
  readonly maxAttempts: number
  readonly deadlineMs: number | undefined
  /** `retry.databaseOutage` is `'wait'`: an attempt failed by an unreachable database does not count. */
  readonly waitOutDatabaseOutages: boolean
  readonly classify: ClassifyOptions
  readonly drainTimeoutMs: number
  /** Spans when an SDK is registered (the `tracing` option). */
  readonly tracing: boolean
  readonly commitIntervalMs: number
  readonly sessionTimeoutMs: number
  /** Retry-tier delays, ms (tier n waits delays[n-1]). */
  readonly tierDelays: readonly number[]
  /** Retry-tier topic → its source topic and tier number. */
  readonly tierTopics: ReadonlyMap<string, { source: string; n: number }>
  readonly tierTopic: (source: string, n: number) => string
  readonly dlqTopic: (source: string) => string
  readonly springHeaders: boolean
  readonly provision: boolean
  readonly state: SqlExecutor | undefined
  readonly pollMs: number
  readonly sequence: ResolvedSequence | undefined
  readonly masker: Masker | undefined
  readonly circuitBreaker: CircuitBreakerOptions | undefined
}

function backoffPolicy(o: ConsumerOptions<unknown>['retry']): BackoffPolicy {
  const b = o?.backoff
  const d = consumerDefaults.retry
  if (typeof b === 'function') return b
  if (b?.type === 'fixed') return fixed(b.ms)
  return exponential({ baseMs: b?.baseMs ?? d.baseMs, factor: b?.factor ?? d.factor, maxMs: b?.maxMs ?? d.maxMs, jitter: b?.jitter ?? d.jitter })
}

const invalid = (path: string, why: string) => new LifelineError('LL_OPTIONS_INVALID', `invalid options: consumer.${path}: ${why}`)

/** Validates `input` (LL_OPTIONS_INVALID naming the option path) and resolves every default. */
export function resolveConsumerOptions<V>(input: ConsumerOptions<V>): ResolvedConsumerOptions {
  const o = validateOptions(ConsumerOptionsSchema, input, 'consumer') as unknown as ConsumerOptions<unknown>
  for (const [path, value, required] of functionOptions(o)) {
    if ((required || value !== undefined) && typeof value !== 'function') throw invalid(path, 'must be a function')
  }
  const ordering = o.ordering ?? consumerDefaults.ordering
  const tierDelays = o.retryTopics?.delaysMs ?? []
  if (tierDelays.length > 0 && ordering !== 'none' && !o.state) {
    throw invalid('state', `retryTopics with ordering '${ordering}' needs a state database, so later records of a retried key park behind it instead of overtaking it (or use ordering 'none' for independent retries)`)
  }
  if (o.sequence && !o.state) throw invalid('state', 'sequence needs a state database for the last handled sequence of each key')
  if (o.startOffsets && o.sequence) throw invalid('startOffsets', 'cannot be combined with sequence (records stored behind a gap let later offsets finish first, so a stored position could skip them)')
  if (o.startOffsets && ordering !== 'partition') throw invalid('startOffsets', "needs ordering 'partition' (a stored position is only safe when every offset below it is finished)")
  if (o.sequence && ordering === 'none') throw invalid('sequence', "needs ordering 'key' or 'partition'")
  const template = o.retryTopics?.topic ?? consumerDefaults.retryTopics.topic
  const tierTopic = (source: string, n: number) => retryTopicName(o.service, source, n, template)
  const tierTopics = new Map<string, { source: string; n: number }>()
  for (const topic of o.topics) {
    tierDelays.forEach((_, i) => {
      const name = tierTopic(topic, i + 1)
      if (o.topics.includes(name) || tierTopics.has(name)) throw invalid('retryTopics.topic', `tier ${i + 1} of ${topic} is named ${name}, which is already a source or tier topic`)
      tierTopics.set(name, { source: topic, n: i + 1 })
    })
  }
  const decoderBase = resolveDecoder(o.decoder as never)
  const s = o.sequence
  return Object.freeze({
    source: o,
    brokers: o.brokers,
    groupId: o.groupId,
    service: o.service,
    topics: Object.freeze([...o.topics]),
    handler: o.handler,
    decoder: o.schema ? withSchema(decoderBase, o.schema) : decoderBase,
    ordering,
    concurrency: o.concurrency ?? consumerDefaults.concurrency,
    atMostOnce: (o.delivery ?? consumerDefaults.delivery) === 'at-most-once',
    maxPerPartition: o.maxBufferedPerPartition ?? consumerDefaults.maxBufferedPerPartition,
    maxBytes: o.maxBufferedBytes ?? consumerDefaults.maxBufferedBytes,
    backoff: backoffPolicy(o.retry),
    maxAttempts: o.retry?.maxAttempts ?? consumerDefaults.retry.maxAttempts,
    deadlineMs: o.retry?.deadlineMs,
    waitOutDatabaseOutages: (o.retry?.databaseOutage ?? 'wait') === 'wait',
    classify: { permanentCodes: o.permanentCodes, classifier: o.classifier },
    drainTimeoutMs: o.drainTimeoutMs ?? consumerDefaults.drainTimeoutMs,
    tracing: o.tracing ?? true,
    commitIntervalMs: o.commitIntervalMs ?? consumerDefaults.commitIntervalMs,
    sessionTimeoutMs: o.sessionTimeoutMs ?? consumerDefaults.sessionTimeoutMs,
    tierDelays: Object.freeze([...tierDelays]),
    tierTopics,
    tierTopic,
    dlqTopic: (source: string) => dlqTopicName(o.service, source, o.deadLetter?.topic),
    springHeaders: o.deadLetter?.springHeaders ?? consumerDefaults.deadLetter.springHeaders,
    provision: o.deadLetter?.provision ?? consumerDefaults.deadLetter.provision,
    state: o.state,
    pollMs: o.parking?.pollMs ?? consumerDefaults.parking.pollMs,
    sequence: s && Object.freeze({ extract: s.extract, firstSequence: s.firstSequence, timeoutMs: s.timeoutMs ?? consumerDefaults.sequence.timeoutMs, policy: s.policy ?? consumerDefaults.sequence.policy }),
    masker: o.masking ? new Masker(o.masking.policies, o.masking.keyring) : undefined,
    circuitBreaker: o.circuitBreaker,
  })
}
