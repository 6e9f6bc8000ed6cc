/**
 * The console's parked keys page: keys the ordering protocol parked, by group, each with its records, and
 * their release (routes-store.tsx).
 *
 * @module
 */
import { Field, Head, may, Notice, Page, ReasonForm, when, type PageContext, type Row } from './layout.js'

export function KeysPage(props: { ctx: PageContext; keys: Row[]; group: string | undefined; shown?: { key: Row; records: Row[] } | undefined; notice?: { kind: 'ok' | 'error'; text: string } | undefined }) {
  const { ctx } = props
  const keyRef = (k: Row) => `group=${encodeURIComponent(String(k.group))}&topic=${encodeURIComponent(String(k.topic))}&key=${encodeURIComponent(Buffer.from(k.key as Buffer).toString('base64url'))}`
  return (
    <Page title="Parked keys" ctx={ctx} active="/console/keys">
      {props.notice === undefined ? null : <Notice kind={props.notice.kind}>{props.notice.text}</Notice>}
      <form method="get" action="/console/keys" class="filters" aria-label="Filter">
        <Field name="group" label="Consumer group" value={props.group} />
        <button type="submit">Show</button>
      </form>
      <table>
        <Head cols={['Group', 'Topic', 'Key', 'Head', 'Waiting', 'Parked at']} />
        <tbody>
          {props.keys.map((k) => (
            <tr>
              <td>{String(k.group)}</td>
              <td>
                {String(k.topic)} [{String(k.partition)}]
              </td>
              <td class="key">
                <a href={`/console/keys?${keyRef(k)}`}>{k.keyText === null ? `(binary ${Buffer.from(k.key as Buffer).toString('hex')})` : String(k.keyText)}</a>
              </td>
              <td>
                offset {String(k.headOffset)} in {String(k.headLocation)} {String(k.headErrorCode ?? '')}
              </td>
              <td>{String(k.parkedRecords)}</td>
              <td>{when(k.parkedAt)}</td>
            </tr>
          ))}
        </tbody>
      </table>
      {props.keys.length === 0 ? <p>No parked key.</p> : null}
      {props.shown === undefined ? null : (
        <section aria-labelledby="h-key">
          <h2 id="h-key">Key {props.shown.key.keyText === null ? '(binary)' : String(props.shown.key.keyText)}</h2>
          <p>
            Parked behind offset {String(props.shown.key.headOffset)} ({String(props.shown.key.headErrorMessage ?? '')}); {props.shown.records.length} record(s) waiting:
          </p>
          <ol>
            {props.shown.records.map((r) => (
              <li>offset {String(r.offset)}</li>
            ))}
          </ol>
          {may(ctx, 'key.release') ? (
            <ReasonForm
              ctx={ctx}
              action="/console/keys/release"
              label="Release"
              name="release"
              extra={
                <>
                  <input type="hidden" name="group" value={String(props.shown.key.group)} />
                  <input type="hidden" name="topic" value={String(props.shown.key.topic)} />
                  <input type="hidden" name="key" value={Buffer.from(props.shown.key.key as Buffer).toString('base64url')} />
                </>
              }
            />
          ) : null}
        </section>
      )}
    </Page>
  )
}
