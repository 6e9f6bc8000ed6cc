/**
 * The console's record pages: error groups, records by filter, one record, its edit-and-replay.
 * They render what the API answered (api.ts): masked fields stay masked, lists carry no payloads.
 *
 * @module
 */
import type { Child } from 'hono/jsx'
import type { DiffOp } from '../util/json-diff.js'
import { Csrf, Field, Head, may, NextPage, Notice, Page, ReasonForm, Select, when, type PageContext, type Row } from './layout.js'

/** The filter fields the console's forms carry (the API's query names). */
export const FILTER_FIELDS = ['topic', 'status', 'errorClass', 'errorCode', 'fingerprint', 'key', 'from', 'to', 'text'] as const
export type FilterParams = Partial<Record<(typeof FILTER_FIELDS)[number], string>>

const STATUSES: Array<[string, string]> = [['', 'any'], ...['pending', 'replaying', 'replayed', 'resolved', 'discarded', 'failed-again'].map((s): [string, string] => [s, s])]

export function FilterForm(props: { action: string; filter: FilterParams; submit: string; ctx?: PageContext; hidden?: Child }) {
  const f = props.filter
  return (
    <form method={props.ctx === undefined ? 'get' : 'post'} action={props.action} class="filters" aria-label="Filter">
      {props.ctx === undefined ? null : <Csrf ctx={props.ctx} />}
      {props.hidden}
      <Field name="topic" label="Topic" value={f.topic} />
      <Select name="status" label="Status" value={f.status} options={STATUSES} />
      <Field name="errorClass" label="Error class" value={f.errorClass} />
      <Field name="errorCode" label="Error code" value={f.errorCode} />
      <Field name="fingerprint" label="Fingerprint" value={f.fingerprint} />
      <Field name="key" label="Key" value={f.key} />
      <Field name="from" label="Failed from" value={f.from} hint="ISO-8601, e.g. 2025-01-31T12:00:00Z" />
      <Field name="to" label="Failed before" value={f.to} hint="ISO-8601" />
      <Field name="text" label="Error text contains" value={f.text} />
      <button type="submit">{props.submit}</button>
    </form>
  )
}

export function GroupsPage(props: { ctx: PageContext; groups: Row[]; filter: FilterParams; error?: string | undefined }) {
  return (
    <Page title="Error groups" ctx={props.ctx} active="/console/groups">
      {props.error === undefined ? null : <Notice kind="error">{props.error}</Notice>}
      <FilterForm action="/console/groups" filter={props.filter} submit="Show groups" />
      <table>
        <caption>Records grouped by failure fingerprint, largest group first</caption>
        <Head cols={['Error', 'Sample message', 'Records', 'Pending', 'Keys', 'Topics', 'Last seen']} />
        <tbody>
          {props.groups.map((g) => (
            <tr>
              <td>
                <a href={`/console/records?fingerprint=${encodeURIComponent(String(g.fingerprint))}`}>
                  {String(g.errorClass ?? '?')} {String(g.errorCode ?? '')}
                </a>
              </td>
              <td class="msg">{String(g.sampleMessage ?? '')}</td>
              <td>{String(g.count)}</td>
              <td>{String(g.pending)}</td>
              <td>{String(g.distinctKeys)}</td>
              <td>{(g.topics as string[]).join(', ')}</td>
              <td>{when(g.lastSeen)}</td>
            </tr>
          ))}
        </tbody>
      </table>
      {props.groups.length === 0 ? <p>No error group matches.</p> : null}
    </Page>
  )
}

export function RecordsTable(props: { records: Row[]; caption: string }) {
  return (
    <table>
      <caption>{props.caption}</caption>
      <Head cols={['Id', 'Topic', 'Key', 'Error', 'Message', 'Status', 'Failed at']} />
      <tbody>
        {props.records.map((r) => (
          <tr>
            <td>
              <a href={`/console/records/${String(r.id)}`}>{String(r.id)}</a>
            </td>
            <td>{String(r.originTopic ?? r.topic)}</td>
            <td class="key">{r.keyText === null ? '(null)' : String(r.keyText)}</td>
            <td>
              {String(r.errorClass ?? '')} {String(r.errorCode ?? '')}
            </td>
            <td class="msg">{String(r.errorMessage ?? '')}</td>
            <td>
              <span class={`status s-${String(r.status)}`}>{String(r.status)}</span>
            </td>
            <td>{when(r.failedAt)}</td>
          </tr>
        ))}
      </tbody>
    </table>
  )
}

export function RecordsPage(props: { ctx: PageContext; records: Row[]; filter: FilterParams; nextAfterId: unknown; since?: number | undefined; error?: string | undefined }) {
  return (
    <Page title="Records" ctx={props.ctx} active="/console/records">
      {props.error === undefined ? null : <Notice kind="error">{props.error}</Notice>}
      {props.since === undefined ? null : (
        <p class="notice info live" role="status" hidden data-new-records={`/console/records/events?after=${props.since}`}>
          Dead letters indexed since this page loaded: <span data-new-count="">0</span>. <a href="">Reload</a>
        </p>
      )}
      <FilterForm action="/console/records" filter={props.filter} submit="Filter" />
      {may(props.ctx, 'redrive.create') ? (
        <p>
          <a href={`/console/redrive?${new URLSearchParams(Object.entries(props.filter).filter(([, v]) => v !== undefined && v !== '') as Array<[string, string]>).toString()}`}>Redrive these records…</a>
        </p>
      ) : null}
      <RecordsTable records={props.records} caption="Dead letters, newest first" />
      {props.records.length === 0 ? <p>No record matches.</p> : null}
      <NextPage base="/console/records" params={props.filter} nextAfterId={props.nextAfterId} />
    </Page>
  )
}

/** A payload's bytes as hex, 16 to a line with offsets. */
export function hexDump(bytes: Buffer): string {
  const lines: string[] = []
  for (let i = 0; i < bytes.length && i < 64 * 1024; i += 16) {
    const chunk = bytes.subarray(i, i + 16)
    lines.push(`${i.toString(16).padStart(8, '0')}  ${[...chunk].map((b) => b.toString(16).padStart(2, '0')).join(' ')}`)
  }
  return lines.join('\n')
}

/** The bytes of a payload field of the API's record (text, else base64). */
export function payloadBytes(text: unknown, base64: unknown): Buffer | null {
  if (typeof base64 === 'string') return Buffer.from(base64, 'base64')
  return typeof text === 'string' ? Buffer.from(text, 'utf8') : null
}

/** A payload as pretty JSON when it is JSON, else as text (or a note when it is binary). */
export function prettyPayload(text: unknown): string {
  if (typeof text !== 'string') return '(binary: see the hex view)'
  try {
    return JSON.stringify(JSON.parse(text), null, 2)
  } catch {
    return text
  }
}

const Dl = (props: { items: Array<[string, Child]> }) => (
  <dl class="facts">
    {props.items.map(([k, v]) => (
      <>
        <dt>{k}</dt>
        <dd>{v}</dd>
      </>
    ))}
  </dl>
)

export function RecordPage(props: { ctx: PageContext; record: Row; view: 'json' | 'hex'; notice?: { kind: 'ok' | 'error' | 'info'; text: string } | undefined }) {
  const r = props.record
  const final = ['resolved', 'discarded'].includes(String(r.status))
  const value = payloadBytes(r.value, r.valueBase64)
  const lives = (label: string, list: Row[]) =>
    list.length === 0 ? null : (
      <>
        <h3>{label}</h3>
        <ul>
          {list.map((l) => (
            <li>
              <a href={`/console/records/${String(l.id)}`}>record {String(l.id)}</a> ({String(l.status)}, failed {when(l.failedAt)})
            </li>
          ))}
        </ul>
      </>
    )
  return (
    <Page title={`Record ${String(r.id)}`} ctx={props.ctx} active="/console/records">
      {props.notice === undefined ? null : <Notice kind={props.notice.kind}>{props.notice.text}</Notice>}
      <section aria-labelledby="h-failure">
        <h2 id="h-failure">Failure</h2>
        <Dl
          items={[
            ['Status', <span class={`status s-${String(r.status)}`}>{String(r.status)}</span>],
            ['Status reason', String(r.statusReason ?? '')],
            ['Origin', `${String(r.originTopic ?? '?')} [${String(r.originPartition ?? '?')}] @ ${String(r.originOffset ?? '?')}`],
            ['DLQ topic', `${String(r.topic)} [${String(r.partition)}] @ ${String(r.offset)}`],
            ['Key', r.keyText === null ? '(null)' : String(r.keyText ?? r.key ?? '')],
            ['Service / group', `${String(r.service ?? '')} / ${String(r.consumerGroup ?? '')}`],
            ['Attempts', String(r.attempts ?? '')],
            ['First failure', when(r.firstFailureAt)],
            ['Last failure', when(r.lastFailureAt ?? r.failedAt)],
            ['Error', `${String(r.errorClass ?? '')} ${String(r.errorCode ?? '')}`],
            ['Message', String(r.errorMessage ?? '')],
            ['Fingerprint', <a href={`/console/records?fingerprint=${encodeURIComponent(String(r.fingerprint ?? ''))}`}>{String(r.fingerprint ?? '')}</a>],
            ['Replays', String(r.replayCount)],
            ['Masked', r.masked === true ? 'yes: masked fields stay masked here' : 'no'],
          ]}
        />
        {r.errorStack === null || r.errorStack === undefined ? null : (
          <details>
            <summary>Stack</summary>
            <pre class="stack">{String(r.errorStack)}</pre>
          </details>
        )}
      </section>

      <section aria-labelledby="h-headers">
        <h2 id="h-headers">Headers</h2>
        <table>
          <Head cols={['Name', 'Value']} />
          <tbody>
            {(r.headers as Row[]).map((h) => (
              <tr>
                <td class="key">{String(h.key)}</td>
                <td class="msg">{typeof h.value === 'string' ? h.value : `base64: ${String(h.valueBase64 ?? '')}`}</td>
              </tr>
            ))}
          </tbody>
        </table>
      </section>

      <section aria-labelledby="h-payload">
        <h2 id="h-payload">Payload</h2>
        <p class="tabs">
          <a href={`/console/records/${String(r.id)}`} aria-current={props.view === 'json' ? 'page' : undefined}>
            JSON / text
          </a>{' '}
          <a href={`/console/records/${String(r.id)}?view=hex`} aria-current={props.view === 'hex' ? 'page' : undefined}>
            Hex
          </a>
        </p>
        <pre class="payload" tabindex={0} aria-label="Payload">
          {value === null ? '(null)' : props.view === 'hex' ? hexDump(value) : prettyPayload(r.value)}
        </pre>
      </section>

      {final ? null : <RecordActions ctx={props.ctx} id={String(r.id)} />}

      <section aria-labelledby="h-history">
        <h2 id="h-history">History</h2>
        <ol class="events">
          {(r.events as Row[]).map((e) => (
            <li>
              {when(e.at)}: {String(e.from ?? 'new')} → {String(e.to)} by {String(e.actor)}
              {e.reason === null || e.reason === undefined ? '' : `: ${String(e.reason)}`}
            </li>
          ))}
        </ol>
        {lives('Earlier lives', (r.earlierLives as Row[] | undefined) ?? [])}
        {lives('Later lives', (r.laterLives as Row[] | undefined) ?? [])}
        {((r.copies as Row[] | undefined) ?? []).length === 0 ? null : (
          <>
            <h3>Further copies in the DLQ topic</h3>
            <ul class="copies">
              {(r.copies as Row[]).map((c) => (
                <li>
                  {String(c.topic)} partition {String(c.partition)} offset {String(c.offset)}, read {when(c.indexedAt)}: the same failure written again (a member that had lost its partition); not a second dead letter
                </li>
              ))}
            </ul>
          </>
        )}
      </section>
    </Page>
  )
}

function RecordActions(props: { ctx: PageContext; id: string }) {
  const { ctx, id } = props
  const actions = [may(ctx, 'record.replay'), may(ctx, 'record.edit'), may(ctx, 'record.discard'), may(ctx, 'record.resolve')]
  if (!actions.some(Boolean)) return null
  return (
    <section aria-labelledby="h-actions" class="actions">
      <h2 id="h-actions">Actions</h2>
      {may(ctx, 'record.replay') ? (
        <form method="post" action={`/console/records/${id}/replay`}>
          <Csrf ctx={ctx} />
          <button type="submit">Replay to its origin</button>
        </form>
      ) : null}
      {may(ctx, 'record.edit') ? (
        <p>
          <a class="button" href={`/console/records/${id}/edit`}>
            Edit and replay…
          </a>
        </p>
      ) : null}
      {may(ctx, 'record.discard') ? <ReasonForm ctx={ctx} action={`/console/records/${id}/discard`} label="Discard" name="discard" /> : null}
      {may(ctx, 'record.resolve') ? <ReasonForm ctx={ctx} action={`/console/records/${id}/resolve`} label="Resolve" name="resolve" /> : null}
    </section>
  )
}

export function EditPage(props: { ctx: PageContext; id: string; text: string; reason: string; errors: string[]; diff?: DiffOp[] | undefined }) {
  const { ctx, id } = props
  return (
    <Page title={`Edit record ${id}`} ctx={ctx} active="/console/records">
      <p>
        <a href={`/console/records/${id}`}>Back to record {id}</a>
      </p>
      {props.errors.length === 0 ? null : (
        <div class="notice error" role="alert" id="edit-errors">
          <p>The value cannot be sent:</p>
          <ul>
            {props.errors.map((e) => (
              <li>{e}</li>
            ))}
          </ul>
        </div>
      )}
      <form method="post" action={`/console/records/${id}/edit`} class="editor">
        <Csrf ctx={ctx} />
        <label for="f-value">Value (JSON)</label>
        <textarea id="f-value" name="value" rows={16} spellcheck={false} data-json-editor="" aria-describedby="json-status" aria-invalid={props.errors.length > 0 ? 'true' : undefined}>
          {props.text}
        </textarea>
        <p id="json-status" class="hint" aria-live="polite"></p>
        <label for="f-reason">Reason (optional)</label>
        <input id="f-reason" name="reason" type="text" maxlength={2000} value={props.reason} />
        {props.diff === undefined ? (
          <button type="submit" name="step" value="preview">
            Show the changes
          </button>
        ) : (
          <>
            <h2>Changes</h2>
            {props.diff.length === 0 ? (
              <p>No change.</p>
            ) : (
              <table class="diff">
                <Head cols={['Path', 'Change', 'Before', 'After']} />
                <tbody>
                  {props.diff.map((d) => (
                    <tr class={`d-${d.op}`}>
                      <td class="key">{d.path === '' ? '(whole value)' : d.path}</td>
                      <td>{d.op}</td>
                      <td class="msg">{d.old === undefined ? '' : JSON.stringify(d.old)}</td>
                      <td class="msg">{d.value === undefined ? '' : JSON.stringify(d.value)}</td>
                    </tr>
                  ))}
                </tbody>
              </table>
            )}
            <button type="submit" name="step" value="preview">
              Check again
            </button>{' '}
            <button type="submit" name="step" value="send" class="primary">
              Save and replay
            </button>
          </>
        )}
      </form>
    </Page>
  )
}
