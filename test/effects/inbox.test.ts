import assert from 'node:assert/strict'
import { test } from 'node:test'
import { Registry } from 'prom-client'
import { compensateOnFailure, listFailures, settleFailure } from '../../src/effects/compensation.js'
import { defineStateMachine, listIgnoredEvents, versionedUpdate } from '../../src/effects/guards.js'
import { createInbox } from '../../src/effects/inbox.js'
import type { ConsumedRecord } from '../../src/kafka/types.js'
import { Message } from '../../src/runtime/message.js'
import { migrateLifeline } from '../../src/store/schema.js'
import type { SqlExecutor } from '../../src/store/executor.js'
import { databaseKinds, freshDatabase } from '../helpers/db.js'
import type { TestContext } from 'node:test'

async function setup(t: TestContext, kind: 'pglite' | 'postgres'): Promise<SqlExecutor> {
  const db = await freshDatabase(t, kind)
  await migrateLifeline(db)
  await db.query('create table payments (order_id text primary key, amount int not null)')
  await db.query("create table orders (order_id text primary key, status text not null, version int not null default 0, amount int)")
  return db
}

function message<V>(value: V, offset: number, headers: Record<string, string> = {}, key = 'k'): Message<V> {
  const record: ConsumedRecord = { topic: 'orders', partition: 0, offset, key: Buffer.from(key), value: Buffer.from(JSON.stringify(value)), headers: Object.entries(headers).map(([k, v]) => ({ key: k, value: Buffer.from(v) })), timestamp: Date.now(), size: 10 }
  return new Message(record, value, 1, new AbortController().signal)
}

for (const kind of databaseKinds()) {
  test(`${kind}: the inbox applies each event id once; a failing handler rolls back its claim with its effects`, async (t) => {
    const db = await setup(t, kind)
    const registry = new Registry()
    let fail = true
    const inbox = createInbox<{ id: string; amount: number }>({
      db,
      consumer: 'billing',
      metrics: { registry },
      handler: async (m, { tx }) => {
        await tx.query('insert into payments (order_id, amount) values ($1, $2)', [m.value.id, m.value.amount])
        if (m.value.id === 'o2' && fail) throw new Error('downstream failed after the write')
      },
    })
    await inbox.handler(message({ id: 'o1', amount: 10 }, 0, { 'event-id': 'e1' }))
    await inbox.handler(message({ id: 'o1', amount: 10 }, 5, { 'event-id': 'e1' })) // re-produced: same id, other offset
    await assert.rejects(Promise.resolve(inbox.handler(message({ id: 'o2', amount: 20 }, 1, { 'event-id': 'e2' }))), /downstream failed/)
    fail = false
    await inbox.handler(message({ id: 'o2', amount: 20 }, 1, { 'event-id': 'e2' })) // the retry applies: the claim was rolled back
    const { rows } = await db.query<{ order_id: string }>('select order_id from payments order by order_id')
    assert.deepEqual(rows.map((r) => r.order_id), ['o1', 'o2'])
    assert.deepEqual(inbox.stats(), { applied: 2, duplicates: 1, ignored: 0 })
    assert.match(await registry.getSingleMetricAsString('lifeline_inbox_events_total'), /outcome="duplicate"\} 1/)
    // Without an event id the record's coordinates identify it: a redelivery is still caught.
    await inbox.handler(message({ id: 'o3', amount: 30 }, 7))
    await inbox.handler(message({ id: 'o3', amount: 30 }, 7))
    assert.equal(inbox.stats().duplicates, 2)
    const strict = createInbox({ db, consumer: 'strict', missingId: 'reject', handler: () => undefined })
    await assert.rejects(Promise.resolve(strict.handler(message({}, 9))), { code: 'LL_ARGUMENT_INVALID' })
    // Retention: nothing is older than an hour; everything is older than 0 ms.
    assert.equal(await inbox.cleanup(3_600_000), 0)
    assert.equal(await inbox.cleanup(0), 3)
    await assert.rejects(inbox.cleanup(-1), { code: 'LL_ARGUMENT_INVALID' })
  })

  test(`${kind}: group commit: records started together share a transaction; a failing one fails alone, the others apply once`, async (t) => {
    const db = await setup(t, kind)
    const txs = new Set<unknown>()
    const inbox = createInbox<{ id: string; amount: number }>({
      db,
      consumer: 'batched',
      batch: { maxRecords: 8 },
      handler: async (m, { tx }) => {
        txs.add(tx)
        await tx.query('insert into payments (order_id, amount) values ($1, $2)', [m.value.id, m.value.amount])
        if (m.value.amount < 0) throw new Error(`negative amount for ${m.value.id}`)
      },
    })
    const calls = Array.from({ length: 6 }, (_, i) => inbox.handler(message({ id: `b${i}`, amount: i }, i, { 'event-id': `e${i}` })))
    await Promise.all(calls)
    assert.equal(txs.size, 1, 'six records, one transaction')
    txs.clear()
    const mixed = [
      inbox.handler(message({ id: 'c1', amount: 1 }, 10, { 'event-id': 'f1' })),
      inbox.handler(message({ id: 'c2', amount: -1 }, 11, { 'event-id': 'f2' })),
      inbox.handler(message({ id: 'c3', amount: 3 }, 12, { 'event-id': 'f3' })),
      inbox.handler(message({ id: 'c3', amount: 3 }, 13, { 'event-id': 'f3' })), // the same event twice in one batch
      inbox.handler(message({ id: 'b0', amount: 0 }, 0, { 'event-id': 'e0' })), // already applied
    ]
    const settled = await Promise.allSettled(mixed)
    assert.deepEqual(settled.map((r) => r.status), ['fulfilled', 'rejected', 'fulfilled', 'fulfilled', 'fulfilled'])
    const { rows } = await db.query<{ order_id: string }>('select order_id from payments order by order_id')
    assert.deepEqual(rows.map((r) => r.order_id), ['b0', 'b1', 'b2', 'b3', 'b4', 'b5', 'c1', 'c3'])
    assert.deepEqual(inbox.stats(), { applied: 8, duplicates: 2, ignored: 0 })
    assert.throws(() => createInbox({ db, consumer: 'x', batch: { maxRecords: 0 }, handler: () => undefined }), { code: 'LL_OPTIONS_INVALID' })
  })

  test(`${kind}: a batchHandler gets a group's claimed events at once (one multi-row insert); a failing group runs each event alone`, async (t) => {
    const db = await setup(t, kind)
    const calls: string[][] = []
    const inbox = createInbox<{ id: string; amount: number }>({
      db,
      consumer: 'multi',
      batch: { maxRecords: 8 },
      storeOffsets: true,
      batchHandler: async (events, { tx }) => {
        calls.push(events.map((e) => e.context.eventId))
        const late = events.filter((e) => e.message.value.amount === 0)
        for (const e of late) await e.context.ignore('zero amount', { entity: 'payment', entityId: e.message.value.id })
        const rows = events.filter((e) => e.message.value.amount !== 0)
        if (rows.length > 0) {
          const values = rows.map((_, i) => `($${2 * i + 1}, $${2 * i + 2})`).join(', ')
          await tx.query(`insert into payments (order_id, amount) values ${values}`, rows.flatMap((e) => [e.message.value.id, e.message.value.amount]))
        }
        if (events.some((e) => e.message.value.amount < 0)) throw new Error('negative amount')
      },
    })
    await Promise.all([
      inbox.handler(message({ id: 'p1', amount: 1 }, 0, { 'event-id': 'g1' })),
      inbox.handler(message({ id: 'p2', amount: 2 }, 1, { 'event-id': 'g2' })),
      inbox.handler(message({ id: 'p2', amount: 2 }, 2, { 'event-id': 'g2' })), // the same event twice in one group
      inbox.handler(message({ id: 'p0', amount: 0 }, 3, { 'event-id': 'g0' })),
    ])
    assert.deepEqual(calls, [['g1', 'g2', 'g0']], 'one call with the claimed events, duplicates left out')
    assert.deepEqual(inbox.stats(), { applied: 2, duplicates: 1, ignored: 1 })
    assert.deepEqual((await listIgnoredEvents(db, { consumer: 'multi' })).map((e) => e.reason), ['zero amount'])
    calls.length = 0
    const settled = await Promise.allSettled([
      inbox.handler(message({ id: 'p3', amount: 3 }, 4, { 'event-id': 'g3' })),
      inbox.handler(message({ id: 'p4', amount: -4 }, 5, { 'event-id': 'g4' })),
      inbox.handler(message({ id: 'p1', amount: 1 }, 6, { 'event-id': 'g1' })), // applied before
    ])
    assert.deepEqual(settled.map((r) => r.status), ['fulfilled', 'rejected', 'fulfilled'])
    assert.deepEqual(calls[0], ['g3', 'g4'])
    assert.deepEqual(calls.slice(1).map((c) => c.join()).sort(), ['g3', 'g4'], 'the group failed: each event ran again alone (g1, a duplicate, reached no handler)')
    const { rows } = await db.query<{ order_id: string }>('select order_id from payments order by order_id')
    assert.deepEqual(rows.map((r) => r.order_id), ['p1', 'p2', 'p3'])
    assert.deepEqual(inbox.stats(), { applied: 3, duplicates: 2, ignored: 1 })
    assert.deepEqual(await inbox.startOffsets([{ topic: 'orders', partition: 0 }]), [{ topic: 'orders', partition: 0, offset: 7 }], 'positions stored by the groups and the lone runs, never moving back')
    assert.throws(() => createInbox({ db, consumer: 'x' }), { code: 'LL_OPTIONS_INVALID' })
    assert.throws(() => createInbox({ db, consumer: 'x', handler: () => undefined, batchHandler: () => undefined }), /only one of them/)
  })

  test(`${kind}: a statement inbox claims and applies a group in one statement; duplicates apply nothing; a failing group runs each event alone`, async (t) => {
    const db = await setup(t, kind)
    const groups: string[][] = []
    const inbox = createInbox<{ id: string; amount: number | null }>({
      db,
      consumer: 'one-statement',
      batch: { maxRecords: 8 },
      storeOffsets: true,
      statement: (events) => {
        groups.push(events.map((e) => e.eventId))
        return {
          text: `insert into payments (order_id, amount)
                 select x.order_id, x.amount from unnest($1::text[], $2::text[], $3::int[]) as x(event_id, order_id, amount)
                 join claimed using (event_id);`,
          values: [events.map((e) => e.eventId), events.map((e) => e.message.value.id), events.map((e) => e.message.value.amount)],
        }
      },
    })
    await Promise.all([
      inbox.handler(message({ id: 'p1', amount: 1 }, 0, { 'event-id': 's1' })),
      inbox.handler(message({ id: 'p2', amount: 2 }, 1, { 'event-id': 's2' })),
      inbox.handler(message({ id: 'p2', amount: 2 }, 2, { 'event-id': 's2' })), // the same event twice in one group
    ])
    assert.deepEqual(groups, [['s1', 's2']], 'one statement for the group, an id once')
    assert.deepEqual(inbox.stats(), { applied: 2, duplicates: 1, ignored: 0 })
    groups.length = 0
    const settled = await Promise.allSettled([
      inbox.handler(message({ id: 'p3', amount: 3 }, 3, { 'event-id': 's3' })),
      inbox.handler(message({ id: 'p4', amount: null }, 4, { 'event-id': 's4' })), // violates "not null"
      inbox.handler(message({ id: 'p1', amount: 1 }, 5, { 'event-id': 's1' })), // applied before
    ])
    assert.deepEqual(settled.map((r) => r.status), ['fulfilled', 'rejected', 'fulfilled'])
    assert.match(String((settled[1] as PromiseRejectedResult).reason), /null/)
    assert.deepEqual(groups[0], ['s3', 's4', 's1'])
    assert.deepEqual(groups.slice(1).map((g) => g.join()).sort(), ['s1', 's3', 's4'], 'the group failed: each event ran again alone')
    const { rows } = await db.query<{ order_id: string; amount: number }>('select order_id, amount from payments order by order_id')
    assert.deepEqual(rows.map((r) => [r.order_id, Number(r.amount)]), [['p1', 1], ['p2', 2], ['p3', 3]], 'p1 once (its second delivery found its claim), p4 not at all')
    const claims = await db.query<{ event_id: string }>("select event_id from lifeline_inbox where consumer = 'one-statement' order by event_id")
    assert.deepEqual(claims.rows.map((r) => r.event_id), ['s1', 's2', 's3'], 'the failing event left no claim: the claim failed with its effect')
    assert.deepEqual(inbox.stats(), { applied: 3, duplicates: 2, ignored: 0 })
    assert.deepEqual(await inbox.startOffsets([{ topic: 'orders', partition: 0 }]), [{ topic: 'orders', partition: 0, offset: 6 }], 'positions stored with the claims, never moving back')
    const bad = createInbox({ db, consumer: 'bad', statement: () => ({ text: ' ; ', values: [] }) })
    await assert.rejects(async () => bad.handler(message({}, 7, { 'event-id': 'b1' })), { code: 'LL_ARGUMENT_INVALID' })
    assert.throws(() => createInbox({ db, consumer: 'x', handler: () => undefined, statement: () => ({ text: '', values: [] }) }), /only one of them/)
  })

  test(`${kind}: storeOffsets writes the next offset with the effects; startOffsets reads it back for the assigned partitions`, async (t) => {
    const db = await setup(t, kind)
    const inbox = createInbox({ db, consumer: 'c', storeOffsets: true, eventId: (m) => `id-${m.offset}`, handler: () => undefined })
    await inbox.handler(message({}, 3))
    await inbox.handler(message({}, 9))
    await inbox.handler(message({}, 4)) // never moves back
    assert.deepEqual(await inbox.startOffsets([{ topic: 'orders', partition: 0 }, { topic: 'orders', partition: 1 }]), [{ topic: 'orders', partition: 0, offset: 10 }])
    assert.deepEqual(await inbox.startOffsets([]), [])
  })

  test(`${kind}: the state machine applies allowed transitions and records late or duplicate ones as ignored, with the reason`, async (t) => {
    const db = await setup(t, kind)
    const orders = defineStateMachine<'CREATED' | 'PAID' | 'SHIPPED' | 'DELIVERED' | 'CANCELLED'>({
      entity: 'order', table: 'orders', idColumn: 'order_id', stateColumn: 'status', versionColumn: 'version', initial: ['CREATED'],
      transitions: { CREATED: ['PAID', 'CANCELLED'], PAID: ['SHIPPED', 'CANCELLED'], SHIPPED: ['DELIVERED'] },
    })
    assert.equal(orders.can('CREATED', 'PAID'), true)
    assert.equal(orders.can('SHIPPED', 'PAID'), false)
    assert.deepEqual(orders.sources('CANCELLED').sort(), ['CREATED', 'PAID'])
    const inbox = createInbox<{ id: string; to: 'CREATED' | 'PAID' | 'SHIPPED' | 'DELIVERED' | 'CANCELLED' }>({ db, consumer: 'orders', eventId: (m) => `${m.value.id}:${m.value.to}:${m.offset}`, handler: (m, ctx) => orders.transition(ctx, m.value.id, m.value.to).then(() => undefined) })
    const steps: Array<'CREATED' | 'PAID' | 'SHIPPED' | 'DELIVERED' | 'CANCELLED'> = ['PAID', 'CREATED', 'PAID', 'SHIPPED', 'PAID', 'SHIPPED', 'CANCELLED', 'DELIVERED', 'BOGUS' as 'PAID']
    for (const [i, to] of steps.entries()) await inbox.handler(message({ id: 'o1', to }, i))
    const { rows } = await db.query<{ status: string; version: number }>('select status, version from orders')
    assert.deepEqual(rows, [{ status: 'DELIVERED', version: 3 }])
    const ignored = await listIgnoredEvents(db, { consumer: 'orders' })
    assert.deepEqual(ignored.map((e) => e.reason).reverse(), [
      'not found (PAID cannot create it)',
      'transition SHIPPED → PAID not allowed',
      'duplicate: already SHIPPED',
      'transition SHIPPED → CANCELLED not allowed',
      'unknown state "BOGUS"',
    ])
    assert.equal(ignored[0]!.entity, 'order')
    assert.equal(ignored[0]!.entityId, 'o1')
    assert.deepEqual(inbox.stats(), { applied: 4, duplicates: 0, ignored: 5 })
    assert.throws(() => defineStateMachine({ entity: 'x', table: 'orders; drop table orders', idColumn: 'id', stateColumn: 's', transitions: {} }), { code: 'LL_OPTIONS_INVALID' })
    await assert.rejects(listIgnoredEvents(db, { limit: 0 }), { code: 'LL_ARGUMENT_INVALID' })
  })

  test(`${kind}: a versioned update applies on the expected version and reports a stale one as ignored, not failed`, async (t) => {
    const db = await setup(t, kind)
    await db.query("insert into orders (order_id, status, version, amount) values ('o1', 'CREATED', 0, 10)")
    const ctx = (tx: SqlExecutor) => ({ tx, ignore: async (reason: string, detail?: Record<string, unknown>) => void (await tx.query("insert into lifeline_ignored_events (consumer, topic, partition, \"offset\", entity, entity_id, reason, detail) values ('v', 't', 0, 0, $1, $2, $3, $4)", [detail?.entity, detail?.entityId, reason, JSON.stringify(detail ?? {})])) })
    assert.deepEqual(await versionedUpdate(ctx(db), { table: 'orders', idColumn: 'order_id', id: 'o1', expectedVersion: 0, set: { amount: 20 } }), { applied: true, version: 1 })
    const stale = await versionedUpdate(ctx(db), { table: 'orders', idColumn: 'order_id', id: 'o1', expectedVersion: 0, set: { amount: 99 } })
    assert.deepEqual(stale, { applied: false, reason: 'stale version: expected 0, the row is at 1', current: 1 })
    assert.deepEqual(await versionedUpdate(ctx(db), { table: 'orders', idColumn: 'order_id', id: 'nope', expectedVersion: 0, set: { amount: 1 } }), { applied: false, reason: 'not found', current: null })
    const { rows } = await db.query<{ amount: number }>("select amount from orders where order_id = 'o1'")
    assert.equal(rows[0]!.amount, 20)
    await assert.rejects(versionedUpdate(ctx(db), { table: 'orders', idColumn: 'order_id', id: 'o1', expectedVersion: 1, set: { 'amount = 0, status': 'x' } }), { code: 'LL_OPTIONS_INVALID' })
  })

  test(`${kind}: a compensation that fails once is retried and recorded; a second hook run skips what is done; operators settle failures`, async (t) => {
    const db = await setup(t, kind)
    const calls: string[] = []
    let stockFailures = 1
    const hook = compensateOnFailure<{ id: string }>({
      db,
      consumer: 'coupons',
      backoffMs: 5,
      maxAttempts: 2,
      compensations: [
        { name: 'restore-stock', run: () => { calls.push('restore-stock'); if (stockFailures-- > 0) throw new Error('redis timeout') } },
        { name: 'notify', run: () => { calls.push('notify'); throw new Error('mail server down') } },
      ],
    })
    const m = message({ id: 'c1' }, 4, { 'event-id': 'evt-4' })
    await assert.rejects(hook(m, Object.assign(new Error('constraint violated'), { code: '23505' })), { code: 'LL_COMPENSATION' })
    assert.deepEqual(calls, ['restore-stock', 'restore-stock', 'notify', 'notify'])
    let [failure] = await listFailures(db, { consumer: 'coupons' })
    assert.equal(failure!.status, 'PENDING')
    assert.equal(failure!.errorCode, '23505')
    assert.equal(failure!.eventId, 'evt-4')
    assert.deepEqual(failure!.compensations.map((c) => [c.name, c.status, c.attempts.map((a) => a.ok)]), [
      ['restore-stock', 'done', [false, true]],
      ['notify', 'failed', [false, false]],
    ])
    assert.equal(failure!.compensations[0]!.attempts[0]!.error, 'redis timeout')
    // The runtime retries the hook: only what is still owed runs, on the same failure record.
    await assert.rejects(hook(m, new Error('again')), { code: 'LL_COMPENSATION' })
    assert.deepEqual(calls.slice(4), ['notify', 'notify'])
    assert.equal((await listFailures(db)).length, 1)
    failure = await settleFailure(db, failure!.id, { status: 'RESOLVED', actor: 'alice', reason: 'stock checked by hand' })
    assert.equal(failure.status, 'RESOLVED')
    assert.equal(failure.resolvedBy, 'alice')
    await assert.rejects(settleFailure(db, failure.id, { status: 'IGNORED', actor: 'bob', reason: 'x' }), { code: 'LL_NOT_FOUND', message: /already RESOLVED/ })
    await assert.rejects(settleFailure(db, '999', { status: 'IGNORED', actor: 'bob', reason: 'x' }), { code: 'LL_NOT_FOUND' })
    await assert.rejects(settleFailure(db, "1; drop table x", { status: 'IGNORED', actor: 'bob', reason: 'x' }), { code: 'LL_ARGUMENT_INVALID' })
    await assert.rejects(listFailures(db, { status: 'DONE' as 'PENDING' }), { code: 'LL_ARGUMENT_INVALID' })
  })
}
