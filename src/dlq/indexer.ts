/**
 * The DLQ indexer: a group consumer of DLQ topics (a list, a regular expression, or both) that stores every
 * record in the DLQ records store, whatever system wrote it ({@link parseDeadLetter}).
 *
 * At-least-once with an idempotent insert: a batch is stored in one transaction, and its offsets are
 * committed only after that; a batch read again (crash, rebalance) inserts nothing twice. While the database
 * is unreachable the batch is retried with backoff (nothing is committed, nothing skipped). A record the
 * database refuses (it should not happen: values are sanitised) is stored again as `unknown` with only its
 * bytes, and skipped (logged and counted) only if even that is refused.
 *
 * Records are masked (the {@link Masker} policies of their origin topic, else of the DLQ topic) before they
 * reach the database: value, key (under `key: 'encrypt'`), error message, stack and every header carrying
 * error text. Lifeline's own records too: what the runtime masked already stays as it is.
 *
 * @module
 * @example
 * const indexer = createDlqIndexer({ brokers: ['127.0.0.1:9092'], db, pattern: '^.*\\.dlq$' })
 * await indexer.start()
 * // ...
 * await indexer.close()
 */
import type { Registry } from 'prom-client'
import { Counter } from 'prom-client'
import { isLifelineError, LifelineError } from '../errors.js'
import { createConsumer } from '../kafka/index.js'
import type { ConsumedRecord, KafkaConsumer, KafkaHeader } from '../kafka/types.js'
import { silentLogger, type Logger } from '../logger.js'
import { migrateLifeline } from '../store/schema.js'
import { TableStatistics } from '../store/table-stats.js'
import { validateOptions } from '../util/options.js'
import { sleep } from '../util/sleep.js'
import { ERROR_TEXT_HEADERS, foreignFingerprint, parseDeadLetter, type DeadLetterContext, type DeadLetterFormat } from '../failure/formats.js'
import { Masker } from '../failure/masking.js'
import { indexRecords, type IndexItem, type IndexResult } from './records.js'
import { metric } from '../util/metric.js'

import { dlqIndexerDefaults, DlqIndexerOptionsSchema, type DlqIndexer, type DlqIndexerOptions } from './indexer-options.js'

export { dlqIndexerDefaults, type DlqIndexer, type DlqIndexerOptions, type DlqIndexerStats } from './indexer-options.js'

/** The tables an indexed record is written to, and the DLQ processor's queries read. */
const DLQ_ANALYZED_TABLES = ['lifeline_dlq_record_bodies', 'lifeline_dlq_record_states', 'lifeline_dlq_events'] as const

function indexerMetrics(registry: Registry | undefined) {
  if (!registry) return { indexed: (_t: string, _f: string, _n: number) => undefined, errors: (_t: string) => undefined, copies: (_t: string) => undefined }
  const counter = (name: string, help: string, labelNames: string[]) => metric(registry, name, () => new Counter({ name, help, labelNames, registers: [registry] }))
  const indexed = counter('lifeline_dlq_indexed_total', 'DLQ records stored by the indexer, by DLQ topic and format.', ['topic', 'format'])
  const errors = counter('lifeline_dlq_index_errors_total', 'DLQ records the indexer could not store at all (skipped; still in their topic).', ['topic'])
  const copies = counter('lifeline_dlq_copies_total', 'Further copies of a stored dead letter read from a DLQ topic (recorded as copies, not as dead letters).', ['topic'])
  return { indexed: (topic: string, format: string, n: number) => indexed.inc({ topic, format }, n), errors: (topic: string) => errors.inc({ topic }), copies: (topic: string) => copies.inc({ topic }) }
}

/** A minimal context for a record whose parsing or storing failed: its bytes are kept, nothing parsed. */
function bareContext(reason: string): DeadLetterContext {
  return { format: 'unknown', fingerprint: foreignFingerprint('unknown', undefined, undefined, undefined), details: { indexError: reason } }
}

const codeOf = (err: unknown): string => (err instanceof LifelineError ? err.code : err instanceof Error ? err.name : typeof err)

/** Creates an indexer; nothing connects until `start()`. Options are validated now (LL_OPTIONS_INVALID). */
export function createDlqIndexer(input: DlqIndexerOptions): DlqIndexer {
  const options = validateOptions(DlqIndexerOptionsSchema, input, 'indexer') as unknown as DlqIndexerOptions
  if (typeof options.db?.transaction !== 'function') throw new LifelineError('LL_OPTIONS_INVALID', 'invalid options: indexer.db: must be a SqlExecutor')
  if ((options.topics ?? []).length === 0 && options.pattern === undefined) throw new LifelineError('LL_OPTIONS_INVALID', 'invalid options: indexer.topics: give DLQ topics, a pattern, or both')
  const pattern = options.pattern === undefined ? undefined : options.pattern.startsWith('^') ? options.pattern : `^${options.pattern}`
  if (pattern !== undefined) {
    try {
      new RegExp(pattern)
    } catch (err) {
      throw new LifelineError('LL_OPTIONS_INVALID', `invalid options: indexer.pattern: ${JSON.stringify(options.pattern)} is not a regular expression`, { cause: err })
    }
  }
  const masker = options.masking ? new Masker(options.masking.policies, options.masking.keyring) : undefined
  const d = dlqIndexerDefaults
  const batchSize = options.batchSize ?? d.batchSize
  const pollTimeoutMs = options.pollTimeoutMs ?? d.pollTimeoutMs
  const drainTimeoutMs = options.drainTimeoutMs ?? d.drainTimeoutMs
  const groupId = options.groupId ?? d.groupId
  const log: Logger = (options.logger ?? silentLogger()).child({ component: 'dlq-indexer', group: groupId })
  const metrics = indexerMetrics(options.metrics?.registry)
  const db = options.db

  // PGlite runs no autovacuum: the indexer, which fills the DLQ tables, keeps their statistics (a server's
  // autovacuum does it there; src/store/table-stats.ts says why a table without them is slow to read).
  const tableStats =
    db.kind === 'pglite' ? new TableStatistics(() => db.query(`analyze ${DLQ_ANALYZED_TABLES.join(', ')}`), (err) => log.warn({ err }, 'analyzing the DLQ tables failed: the planner keeps their older statistics')) : undefined
  const stats = { indexed: 0, duplicates: 0, copies: 0, linked: 0, skipped: 0, byFormat: {} as Partial<Record<DeadLetterFormat, number>>, lastIndexedAt: undefined as number | undefined }
  const stop = new AbortController()
  let consumer: KafkaConsumer | undefined
  let starting: Promise<void> | undefined
  let closing: Promise<void> | undefined
  let loopDone: Promise<void> = Promise.resolve()
  let inFlight: Promise<void> = Promise.resolve()
  let running = false

  /**
   * Masks a record's value, key, error text and named headers under the policies of its origin (else DLQ)
   * topic, whatever its format: a Lifeline record the runtime masked already keeps its masked values as they
   * are (nothing is encrypted twice) and gets what the processor's policies add.
   */
  function mask(record: ConsumedRecord, context: DeadLetterContext): IndexItem {
    const runtimeMasked = context.format === 'lifeline' && context.masked !== undefined
    if (!masker) return { record, context, masked: runtimeMasked }
    const policyTopic = context.originTopic !== undefined && masker.covers(context.originTopic) ? context.originTopic : record.topic
    if (!masker.covers(policyTopic)) return { record, context, masked: runtimeMasked }
    try {
      const out = masker.mask(policyTopic, { value: record.value, errorMessage: context.errorMessage ?? '', errorStack: context.errorStack, headers: record.headers, key: record.key })
      let masked = out.masked || runtimeMasked
      const headers: KafkaHeader[] = out.headers.map((h) => {
        if (!ERROR_TEXT_HEADERS.has(h.key) || h.value === null) return h
        const clear = h.value.toString('utf8')
        const text = masker.mask(policyTopic, { value: record.value, errorMessage: clear, headers: [], key: record.key }).errorMessage
        if (text === clear) return h
        masked = true
        return { key: h.key, value: Buffer.from(text, 'utf8') }
      })
      const maskedContext: DeadLetterContext = { ...context }
      if (context.errorMessage !== undefined) maskedContext.errorMessage = out.errorMessage
      if (out.errorStack !== undefined) maskedContext.errorStack = out.errorStack
      return { record: { ...record, key: out.key === undefined ? record.key : out.key, value: out.value, headers }, context: maskedContext, masked }
    } catch (err) {
      // Never store in clear what a policy covers: keep the headers without error text, drop the value.
      log.error({ err, topic: record.topic, partition: record.partition, offset: record.offset }, 'masking failed: the record is stored without its value and error text')
      const headers = record.headers.filter((h) => !ERROR_TEXT_HEADERS.has(h.key))
      const { errorMessage: _m, errorStack: _s, ...rest } = context
      return { record: { ...record, value: null, headers }, context: { ...rest, details: { ...context.details, maskingError: codeOf(err) } }, masked: true }
    }
  }

  function prepare(record: ConsumedRecord): IndexItem {
    let context: DeadLetterContext
    try {
      context = parseDeadLetter(record)
    } catch (err) {
      // parseDeadLetter never throws by contract; if it ever does, the record is still indexed.
      log.error({ err, topic: record.topic, partition: record.partition, offset: record.offset }, 'parsing a dead letter failed: indexed as unknown')
      context = bareContext(codeOf(err))
    }
    return mask(record, context)
  }

  /** Runs `step` until it succeeds or fails for good; retriable database errors wait with backoff. Undefined when close() stopped it. */
  async function retrying<T>(what: string, step: () => Promise<T>): Promise<T | undefined> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await step()
      } catch (err) {
        if (!(err instanceof LifelineError) || !err.retriable) throw err
        if (stop.signal.aborted) return undefined
        const delay = Math.min(d.retryMaxMs, d.retryBaseMs * 2 ** Math.min(attempt - 1, 10))
        log.warn({ err, attempt, delayMs: delay }, `${what} failed; retrying`)
        try {
          await sleep(delay, stop.signal)
        } catch (aborted) {
          if (isLifelineError(aborted, 'LL_ABORTED')) return undefined
          throw aborted
        }
      }
    }
  }

  /** Stores records one by one after their batch was refused; a refused record is stored bare, then skipped. */
  async function storeEach(items: IndexItem[]): Promise<Array<IndexResult | undefined> | undefined> {
    const results: Array<IndexResult | undefined> = []
    for (const item of items) {
      const where = { topic: item.record.topic, partition: item.record.partition, offset: item.record.offset }
      try {
        const one = await retrying('storing a DLQ record', () => indexRecords(db, [item]))
        if (one === undefined) return undefined
        results.push(one[0])
        continue
      } catch (err) {
        if (isLifelineError(err, 'LL_DB_CLOSED')) throw err
        log.error({ err, ...where }, 'the database refused a DLQ record: storing it as unknown')
      }
      const bare: IndexItem = { record: { ...item.record, headers: [] }, context: bareContext('refused'), masked: item.masked }
      try {
        const one = await retrying('storing a DLQ record', () => indexRecords(db, [bare]))
        if (one === undefined) return undefined
        results.push(one[0])
      } catch (err) {
        if (isLifelineError(err, 'LL_DB_CLOSED')) throw err
        log.error({ err, ...where }, 'the database refused a DLQ record even bare: skipped (it stays in its topic)')
        stats.skipped++
        metrics.errors(item.record.topic)
        results.push(undefined)
      }
    }
    return results
  }

  /** Stores a prepared batch (one transaction), then commits its offsets. */
  async function processBatch(kafka: KafkaConsumer, records: ConsumedRecord[], items: IndexItem[]): Promise<void> {
    let results: Array<IndexResult | undefined> | undefined
    try {
      results = await retrying('storing a batch of DLQ records', () => indexRecords(db, items))
    } catch (err) {
      if (isLifelineError(err, 'LL_DB_CLOSED')) throw err
      log.warn({ err, records: items.length }, 'a batch of DLQ records was refused: storing them one by one')
      results = await storeEach(items)
    }
    if (results === undefined) return // close() during a database outage: nothing committed, read again later
    const counts = new Map<string, number>()
    results.forEach((result, i) => {
      if (result === undefined) return
      if (result.copy === true) {
        stats.copies++
        metrics.copies(items[i]!.record.topic)
        log.warn({ topic: items[i]!.record.topic, partition: items[i]!.record.partition, offset: items[i]!.record.offset, record: result.id }, 'a further copy of a stored dead letter (same group, origin and life): recorded as a copy')
        return
      }
      if (!result.inserted) {
        stats.duplicates++
        return
      }
      const { record, context } = items[i]!
      stats.indexed++
      if (result.previousId !== undefined) stats.linked++
      stats.byFormat[context.format] = (stats.byFormat[context.format] ?? 0) + 1
      const key = `${record.topic}\u0000${context.format}`
      counts.set(key, (counts.get(key) ?? 0) + 1)
    })
    tableStats?.wrote(results.filter((r) => r?.inserted === true).length)
    for (const [key, n] of counts) {
      const [topic, format] = key.split('\u0000') as [string, string]
      metrics.indexed(topic, format, n)
    }
    stats.lastIndexedAt = Date.now()
    const next = new Map<string, { topic: string; partition: number; offset: number }>()
    for (const r of records) {
      const k = `${r.topic}\u0000${r.partition}`
      if ((next.get(k)?.offset ?? -1) < r.offset + 1) next.set(k, { topic: r.topic, partition: r.partition, offset: r.offset + 1 })
    }
    try {
      await kafka.commit([...next.values()])
    } catch (err) {
      // Stored already: a lost commit only means reading the batch again, which inserts nothing twice.
      log.warn({ err }, 'committing DLQ offsets failed; the records will be read again (idempotent)')
    }
  }

  /**
   * Polls and prepares (parses, masks) the next batch while the previous one is stored: one batch is stored
   * at a time, in order, and its offsets are committed before the next one is stored.
   */
  async function loop(kafka: KafkaConsumer): Promise<void> {
    let failures = 0
    let dbClosed: unknown
    while (!stop.signal.aborted && dbClosed === undefined) {
      let records: ConsumedRecord[]
      try {
        records = await kafka.poll(batchSize, pollTimeoutMs)
        failures = 0
      } catch (err) {
        if (stop.signal.aborted) break
        failures++
        log.warn({ err }, 'polling the DLQ topics failed; retrying')
        await sleep(Math.min(d.retryMaxMs, d.retryBaseMs * 2 ** Math.min(failures, 10)), stop.signal).catch(() => undefined)
        continue
      }
      if (records.length === 0) continue
      const items = records.map(prepare)
      await inFlight // the previous batch: stored and committed (never rejects)
      if (dbClosed !== undefined) break
      inFlight = processBatch(kafka, records, items).catch((err: unknown) => {
        dbClosed = err
      })
    }
    await inFlight
    if (dbClosed !== undefined) log.error({ err: dbClosed }, 'the DLQ indexer stopped: its database is closed')
    running = false
  }

  async function doStart(): Promise<void> {
    if (options.migrate ?? d.migrate) await migrateLifeline(db, { logger: log })
    if (stop.signal.aborted) return
    const config: Record<string, string | number | boolean> = { ...(pattern !== undefined ? { 'topic.metadata.refresh.interval.ms': options.topicRefreshMs ?? d.topicRefreshMs } : {}), ...options.kafkaConfig }
    const kafka = createConsumer({
      brokers: options.brokers,
      clientId: options.clientId ?? d.clientId,
      groupId,
      fromBeginning: true,
      config,
      rebalance: {
        // Let the batch being stored commit before its partitions go (bounded: a database outage must not hold the group).
        onRevoke: async () => {
          const timeout = new AbortController()
          await Promise.race([inFlight, sleep(drainTimeoutMs, timeout.signal).catch(() => undefined)])
          timeout.abort()
        },
        onError: (err) => log.warn({ err }, 'a rebalance hook failed'),
      },
    })
    consumer = kafka
    // librdkafka treats a subscription entry starting with ^ as a regular expression.
    kafka.subscribe([...(options.topics ?? []), ...(pattern !== undefined ? [pattern] : [])])
    await kafka.connect()
    running = true
    log.info({ topics: options.topics, pattern }, 'DLQ indexer started')
    loopDone = loop(kafka)
  }

  function start(): Promise<void> {
    if (starting || closing) return Promise.reject(new LifelineError('LL_CONSUMER_STATE', closing ? 'start() after close()' : 'start() called twice'))
    starting = doStart()
    return starting
  }

  function close(): Promise<void> {
    closing ??= (async () => {
      stop.abort()
      await starting?.catch(() => undefined)
      await loopDone
      await consumer?.close()
      await tableStats?.settled()
      running = false
      log.info(stats, 'DLQ indexer closed')
    })()
    return closing
  }

  return {
    start,
    close,
    stats: () => ({ running, ...stats, byFormat: { ...stats.byFormat }, assigned: consumer && running ? consumer.assignment() : [] }),
    [Symbol.asyncDispose]: close,
  }
}
