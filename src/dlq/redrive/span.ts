/**
 * A replay's tracing span (only with a tracing SDK): single replays and bulk jobs send under it.
 *
 * @module
 */
import type { Span } from '@opentelemetry/api'
import type { KafkaHeader, ProduceRecord } from '../../kafka/types.js'
import { spanContextFrom, startSendSpan, tracingActive, withTraceHeaders } from '../../trace/tracing.js'

/**
 * With a tracing SDK: the replay's `send` span. An operator's redrive starts a new trace (or continues the
 * operator's request span), linked to the dead letter's context; the replayed record carries the new context.
 */
export function redriveSpan(record: ProduceRecord, deadLetterHeaders: readonly KafkaHeader[]): Span | undefined {
  if (!tracingActive()) return undefined
  const dead = spanContextFrom(deadLetterHeaders)
  const span = startSendSpan({ topic: record.topic, partition: record.partition ?? -1, key: typeof record.key === 'string' ? Buffer.from(record.key) : (record.key ?? null) }, undefined, dead ? [{ context: dead }] : [], { 'lifeline.redrive': true })
  record.headers = withTraceHeaders(record.headers ?? [], span)
  return span
}
