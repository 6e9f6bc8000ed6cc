/**
 * Tracing with `@opentelemetry/api` only: the application brings (and registers) the SDK; without one
 * nothing here allocates — {@link tracingActive} is checked before any span is made.
 *
 * Spans follow OpenTelemetry's messaging conventions for Kafka:
 * - a `process {topic}` span (kind CONSUMER) per handler attempt, a child of the record's W3C
 *   `traceparent`/`tracestate` headers (the producer's span, or the span that wrote a retry-tier copy);
 * - a `send {topic}` span (kind PRODUCER) per retry-tier, DLQ and redrive write, whose context is written
 *   onto the record (`traceparent`, `tracestate`), so the next attempt continues the same trace;
 * - where a new trace starts (an operator's redrive of a dead letter), the new span links to the dead
 *   letter's context.
 * So one trace links the original produce, each retry, the dead letter, and — by a link — the redrive and
 * the final success.
 *
 * The W3C header codec is here (not the global propagator, which is a no-op until an SDK sets one), so
 * trace context crosses Lifeline's own hops whatever propagator the application registers.
 *
 * @module
 */
import { context, ProxyTracerProvider, ROOT_CONTEXT, SpanKind, SpanStatusCode, trace, TraceFlags, type Attributes, type Context, type Link, type Span, type SpanContext, type Tracer, type TracerProvider } from '@opentelemetry/api'
import type { KafkaHeader } from '../kafka/types.js'

export const TRACEPARENT = 'traceparent'
export const TRACESTATE = 'tracestate'

/** The instrumentation scope's name. */
export const TRACER_NAME = 'lifeline'

const NOOP_PROVIDER = new ProxyTracerProvider().getDelegate()

/** Whether an SDK registered a tracer provider (checked per poll batch by the runtime). */
export function tracingActive(): boolean {
  const provider = trace.getTracerProvider()
  const delegate = provider instanceof ProxyTracerProvider ? provider.getDelegate() : provider
  return delegate !== NOOP_PROVIDER
}

const TRACEPARENT_RE = /^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(?:-.*)?$/

/** Reads a W3C `traceparent` (and `tracestate`) from record headers (the last of each wins); undefined when absent or invalid. */
export function spanContextFrom(headers: readonly KafkaHeader[]): SpanContext | undefined {
  let parent: string | undefined
  let state: string | undefined
  for (const h of headers) {
    if (h.key === TRACEPARENT) parent = h.value?.toString('latin1').trim().toLowerCase()
    else if (h.key === TRACESTATE) state = h.value?.toString('latin1')
  }
  const m = parent === undefined ? null : TRACEPARENT_RE.exec(parent)
  if (!m || m[1] === 'ff' || /^0+$/.test(m[2]!) || /^0+$/.test(m[3]!)) return undefined
  return {
    traceId: m[2]!,
    spanId: m[3]!,
    traceFlags: Number.parseInt(m[4]!, 16) & TraceFlags.SAMPLED,
    isRemote: true,
    ...(state === undefined ? {} : { traceState: { get: () => undefined, set() { return this }, unset() { return this }, serialize: () => state! } }),
  }
}

/** The `traceparent` (and `tracestate`) of `span`, replacing any in `headers`. */
export function withTraceHeaders(headers: readonly KafkaHeader[], span: Span): KafkaHeader[] {
  const sc = span.spanContext()
  const out = headers.filter((h) => h.key !== TRACEPARENT && h.key !== TRACESTATE)
  out.push({ key: TRACEPARENT, value: Buffer.from(`00-${sc.traceId}-${sc.spanId}-${(sc.traceFlags & TraceFlags.SAMPLED).toString(16).padStart(2, '0')}`, 'latin1') })
  const state = sc.traceState?.serialize()
  if (state) out.push({ key: TRACESTATE, value: Buffer.from(state, 'latin1') })
  return out
}

/** The context a record's headers carry (the root context when none). */
export function contextFrom(headers: readonly KafkaHeader[]): Context {
  const sc = spanContextFrom(headers)
  return sc ? trace.setSpanContext(ROOT_CONTEXT, sc) : ROOT_CONTEXT
}

export interface MessagingTarget {
  topic: string
  partition: number
  offset?: number
  key: Buffer | null
  group?: string
}

// Built by assignment, not spreads: one object per span on the per-record path.
function attributes(operation: 'process' | 'send', t: MessagingTarget, extra: Attributes | undefined): Attributes {
  const a: Attributes = {
    'messaging.system': 'kafka',
    'messaging.operation.type': operation,
    'messaging.operation.name': operation,
    'messaging.destination.name': t.topic,
    'messaging.destination.partition.id': PARTITION_IDS[t.partition] ?? String(t.partition),
  }
  if (t.offset !== undefined && t.offset >= 0) a['messaging.kafka.offset'] = t.offset
  if (t.key !== null) a['messaging.kafka.message.key'] = t.key.toString('utf8')
  if (t.group !== undefined) a['messaging.consumer.group.name'] = t.group
  if (extra) for (const k in extra) a[k] = extra[k]
  return a
}

const PARTITION_IDS = Array.from({ length: 1024 }, (_, i) => String(i))
const SPAN_NAMES = new Map<string, string>()
const spanName = (operation: 'process' | 'send', topic: string): string => {
  const k = operation === 'process' ? topic : `\u0000${topic}`
  let name = SPAN_NAMES.get(k)
  if (name === undefined) {
    name = `${operation} ${topic}`
    if (SPAN_NAMES.size < 10_000) SPAN_NAMES.set(k, name)
  }
  return name
}

// The global provider's tracer, looked up again only when the provider object changes (an SDK registered
// or disabled): getTracer() is a map lookup per call otherwise, on the per-record path.
let cachedProvider: TracerProvider | undefined
let cachedTracer: Tracer | undefined
function tracer(): Tracer {
  const provider = trace.getTracerProvider()
  if (provider !== cachedProvider || cachedTracer === undefined) {
    cachedProvider = provider
    cachedTracer = provider.getTracer(TRACER_NAME)
  }
  return cachedTracer
}

/** A `process {topic}` span, a child of the record's trace context. */
export function startProcessSpan(t: MessagingTarget, headers: readonly KafkaHeader[], extra?: Attributes): { span: Span; context: Context } {
  const parent = headers.length === 0 ? ROOT_CONTEXT : contextFrom(headers)
  const span = tracer().startSpan(spanName('process', t.topic), { kind: SpanKind.CONSUMER, attributes: attributes('process', t, extra) }, parent)
  return { span, context: trace.setSpan(parent, span) }
}

/** A `send {topic}` span: a child of `parent` (or a new trace), linked to `links` (where a new trace starts). */
export function startSendSpan(t: MessagingTarget, parent: Context = context.active(), links: Link[] = [], extra?: Attributes): Span {
  return tracer().startSpan(spanName('send', t.topic), { kind: SpanKind.PRODUCER, attributes: attributes('send', t, extra), links }, parent)
}

/** Ends `span` as a failure. */
export function endFailed(span: Span, error: unknown): void {
  span.recordException(error instanceof Error ? error : new Error(String(error)))
  span.setStatus({ code: SpanStatusCode.ERROR, message: (error as Error)?.message ?? String(error) })
  span.end()
}

/** The trace id of a span (ended or not), for log lines; undefined for none or a no-op span. */
export function traceIdOf(span: Span | undefined): string | undefined {
  if (span === undefined) return undefined
  const sc = span.spanContext()
  return trace.isSpanContextValid(sc) ? sc.traceId : undefined
}

export { context as otelContext }
