/**
 * Notifications the DLQ processor sends (pure): what each kind says, and the two payloads a webhook can
 * get — a Slack-compatible one (`{ text, blocks }`, incoming webhooks and most chat tools that copy them)
 * and a generic JSON one. A notification never carries a record's key, value or headers: only error
 * classes, codes, counts, topics and the error message as stored (masked at indexing) and masked again by
 * the caller. Documented in docs/dlq.md#notifications.
 */
import type { NotificationKind } from './metrics.js'

export type { NotificationKind }

export interface Notification {
  kind: NotificationKind
  /** Two notifications with the same key inside the dedup window are sent once. */
  dedupKey: string
  severity: 'info' | 'warning' | 'critical'
  title: string
  /** ISO-8601 time of the event. */
  at: string
  /** Short facts (shown as a list; JSON: the `data` object). */
  fields: Record<string, string | number>
  /** The (masked, truncated) error message, when there is one. */
  message?: string
  /** Where an operator looks next (the API or the console), when the processor knows its public URL. */
  link?: string
}

/** The longest error message a notification quotes (characters). */
export const MESSAGE_LIMIT = 300

export function truncate(text: string, limit = MESSAGE_LIMIT): string {
  return text.length <= limit ? text : `${text.slice(0, limit - 1)}…`
}

const link = (base: string | undefined, path: string): string | undefined => (base === undefined ? undefined : `${base.replace(/\/+$/, '')}${path}`)

export function newErrorGroup(input: { fingerprint: string; errorClass: string | null; errorCode: string | null; message: string | null; topic: string; dlqTopic: string; group: string | null; records: number; firstRecordId: string; at: Date; publicUrl?: string }): Notification {
  const fields: Record<string, string | number> = { fingerprint: input.fingerprint, errorClass: input.errorClass ?? '(none)', errorCode: input.errorCode ?? '(none)', topic: input.topic, dlqTopic: input.dlqTopic, records: input.records, firstRecordId: input.firstRecordId }
  if (input.group !== null) fields.group = input.group
  const n: Notification = {
    kind: 'new-error-group',
    dedupKey: `new-error-group:${input.fingerprint}`,
    severity: 'warning',
    title: `New error group in ${input.topic}: ${input.errorClass ?? 'unknown error'}${input.errorCode ? ` (${input.errorCode})` : ''}`,
    at: input.at.toISOString(),
    fields,
  }
  if (input.message) n.message = truncate(input.message)
  const l = link(input.publicUrl, `/v1/records?fingerprint=${encodeURIComponent(input.fingerprint)}`)
  if (l) n.link = l
  return n
}

export function deadLetterRate(input: { count: number; threshold: number; windowMs: number; topics: Array<{ topic: string; count: number }>; at: Date; publicUrl?: string }): Notification {
  const minutes = input.windowMs / 60_000
  const fields: Record<string, string | number> = { deadLetters: input.count, threshold: input.threshold, windowSeconds: Math.round(input.windowMs / 1000) }
  input.topics.slice(0, 5).forEach((t, i) => (fields[`topic${i + 1}`] = `${t.topic}: ${t.count}`))
  const n: Notification = {
    kind: 'dead-letter-rate',
    dedupKey: 'dead-letter-rate',
    severity: 'critical',
    title: `${input.count} dead letters in the last ${minutes >= 1 ? `${+minutes.toFixed(1)} min` : `${Math.round(input.windowMs / 1000)} s`} (threshold ${input.threshold})`,
    at: input.at.toISOString(),
    fields,
  }
  const l = link(input.publicUrl, '/v1/groups')
  if (l) n.link = l
  return n
}

/** `pause`: the job's pause count (each pause of one job is its own notification). */
export function jobPaused(input: { jobId: string; pause: number; reason: string | null; done: number; total: number; requestedBy: string; at: Date; publicUrl?: string }): Notification {
  const n: Notification = {
    kind: 'job-paused',
    dedupKey: `job-paused:${input.jobId}:${input.pause}`,
    severity: 'warning',
    title: `Redrive job ${input.jobId} paused`,
    at: input.at.toISOString(),
    fields: { job: input.jobId, progress: `${input.done} / ${input.total}`, requestedBy: input.requestedBy, reason: truncate(input.reason ?? '(none)') },
  }
  const l = link(input.publicUrl, `/v1/jobs/${input.jobId}`)
  if (l) n.link = l
  return n
}

export function approvalRequested(input: { approvalId: string; action: string; requestedBy: string; target: string | null; count: number | null; at: Date; publicUrl?: string }): Notification {
  const fields: Record<string, string | number> = { approval: input.approvalId, action: input.action, requestedBy: input.requestedBy }
  if (input.target !== null) fields.target = input.target
  if (input.count !== null) fields.records = input.count
  const n: Notification = {
    kind: 'approval-requested',
    dedupKey: `approval-requested:${input.approvalId}`,
    severity: 'info',
    title: `Approval ${input.approvalId} requested by ${input.requestedBy}: ${input.action}`,
    at: input.at.toISOString(),
    fields,
  }
  const l = link(input.publicUrl, `/v1/approvals/${input.approvalId}`)
  if (l) n.link = l
  return n
}

/** Slack's mrkdwn needs `&`, `<` and `>` escaped; unescaped, a message could mention `<!channel>` or forge a link. */
export function slackEscape(text: string): string {
  return text.replaceAll('&', '&amp;').replaceAll('<', '&lt;').replaceAll('>', '&gt;')
}

const ICON = { info: ':information_source:', warning: ':warning:', critical: ':rotating_light:' } as const

/** The Slack incoming-webhook payload: `text` (the fallback every client shows) and Block Kit blocks. */
export function toSlack(n: Notification, suppressed = 0): { text: string; blocks: unknown[] } {
  const facts = Object.entries(n.fields).map(([k, v]) => `*${slackEscape(k)}*: ${slackEscape(String(v))}`)
  const lines = [`${ICON[n.severity]} *${slackEscape(n.title)}*`, ...facts]
  if (n.message !== undefined) lines.push(`> ${slackEscape(n.message).replaceAll('\n', '\n> ')}`)
  if (n.link !== undefined) lines.push(`<${n.link}|Open in Lifeline>`)
  const context = [`lifeline · ${n.kind} · ${n.at}`]
  if (suppressed > 0) context.push(`${suppressed} notification(s) suppressed by the rate limit since the last message`)
  const text = lines.join('\n')
  return {
    text,
    blocks: [
      { type: 'section', text: { type: 'mrkdwn', text: truncate(text, 3000) } },
      { type: 'context', elements: context.map((c) => ({ type: 'mrkdwn', text: slackEscape(c) })) },
    ],
  }
}

/** The generic payload. `version` changes only when a field changes meaning or goes away. */
export function toJson(n: Notification, suppressed = 0): Record<string, unknown> {
  return { source: 'lifeline', version: 1, kind: n.kind, severity: n.severity, title: n.title, at: n.at, dedupKey: n.dedupKey, data: n.fields, ...(n.message === undefined ? {} : { message: n.message }), ...(n.link === undefined ? {} : { link: n.link }), suppressed }
}
