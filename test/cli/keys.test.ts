/**
 * `lifeline keys`. Most checks run the command tree in this process (buildProgram(), what main.ts runs), as
 * starting the CLI costs ~3 s a run (tsx, then PGlite's WebAssembly); a few run bin/lifeline.js as a child
 * process for the end-to-end path: exit codes and the error line main.ts prints.
 */
import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { existsSync } from 'node:fs'
import { join } from 'node:path'
import { describe, test, type TestContext } from 'node:test'
import { promisify } from 'node:util'
import { ProtocolStore, type Fence, type HeadMove } from '../../src/ordering/protocol-store.js'
import { createParkedKeys } from '../../src/ordering/state-store.js'
import { openPglite } from '../../src/store/open.js'
import { migrateLifeline } from '../../src/store/schema.js'
import { pgliteDataDir, tempDir } from '../helpers/db.js'
import { runCli, runCliFails } from '../helpers/cli.js'

const exec = promisify(execFile)
const cli = new URL('../../bin/lifeline.js', import.meta.url).pathname
const BINARY_KEY = Buffer.from([0xff, 0x00, 0xfe])
const LONG_VALUE = JSON.stringify({ status: 'PAID', note: 'x'.repeat(200) })

interface Failure { code: number; stdout: string; stderr: string }

/** Runs `lifeline keys <args>` as a child process (bin/lifeline.js). */
function child(args: string[]): Promise<{ stdout: string; stderr: string }> {
  const { DATABASE_URL: _url, LIFELINE_DATA_DIR: _dir, ...env } = process.env
  return exec(process.execPath, [cli, 'keys', ...args], { env })
}

/** Runs `lifeline keys <args>` as a child process expecting exit code 1; returns its stderr. */
async function childFails(args: string[]): Promise<string> {
  let stderr = ''
  await assert.rejects(child(args), (err: Failure) => {
    assert.equal(err.code, 1, `exit code of keys ${args.join(' ')}: ${err.stderr}`)
    stderr = err.stderr
    return true
  })
  return stderr
}

/** Runs `lifeline keys <args>` in this process and returns what it printed. */
const keys = async (args: string[]): Promise<string> => (await runCli(['keys', ...args])).out

const keysFails = (args: string[], code?: string): Promise<string> => runCliFails(['keys', ...args], code)

/**
 * A PGlite directory with: billing/orders key `order-1` (partition 2) parked in retry:1 behind offset 41 with
 * three records (sequences 2 and 3, then one without: replayed first); billing/orders key ff00fe (not UTF-8,
 * partition 0) parked in the DLQ behind offset 7 with one record; shipping/orders key `order-1` parked with
 * none. Written as the runtime writes it: through ProtocolStore, as the owner of each partition.
 */
async function seeded(t: TestContext): Promise<string> {
  const dataDir = await pgliteDataDir(t)
  const db = await openPglite({ dataDir })
  try {
    await migrateLifeline(db)
    const store = new ProtocolStore(db)
    const owner = async (group: string, partition: number): Promise<Fence> => ({ topic: 'orders', partition, epoch: (await store.claim(group, 'orders', partition, 'seed', true)).epoch })
    const park = async (group: string, fence: Fence, move: Pick<HeadMove, 'key' | 'headOffset' | 'token' | 'location' | 'errorCode'> & { headTopic: string }): Promise<void> => {
      const { headTopic, ...head } = move
      const copy = { topic: headTopic, partition: 0, key: move.key, value: Buffer.from('head'), headers: [] }
      assert.equal(await store.moveHead(fence, group, { topic: 'orders', partition: fence.partition, expect: { status: 'none' }, errorMessage: 'handler timed out\nafter 5 s', copy, ...head }), 'ok')
      assert.equal(await store.placed(fence, group, 'orders', move.key, move.token), 'ok')
    }
    const two = await owner('billing', 2)
    await park('billing', two, { key: Buffer.from('order-1'), headOffset: 41, token: 't1', location: 'retry:1', headTopic: 'billing.orders.retry.1', errorCode: 'LL_HANDLER_TIMEOUT' })
    const follower = { topic: 'orders', partition: 2, key: Buffer.from('order-1'), headers: [{ key: 'h', value: Buffer.from('v') }], timestamp: 1_700_000_000_000 }
    assert.equal(await store.store(two, 'billing', { ...follower, offset: 42, seq: 2, value: Buffer.from('{"status":"PAID"}') }), 'stored')
    assert.equal(await store.store(two, 'billing', { ...follower, offset: 43, seq: 3, value: Buffer.from(LONG_VALUE) }), 'stored')
    assert.equal(await store.store(two, 'billing', { ...follower, offset: 44, value: Buffer.from([0xde, 0xad, 0xbe, 0xef]) }), 'stored')
    const zero = await owner('billing', 0)
    await park('billing', zero, { key: BINARY_KEY, headOffset: 7, token: 't2', location: 'dlq', headTopic: 'billing.orders.dlq', errorCode: 'LL_DECODE' })
    assert.equal(await store.store(zero, 'billing', { topic: 'orders', partition: 0, key: BINARY_KEY, offset: 9, value: null, headers: [], timestamp: 1_700_000_000_001 }), 'stored')
    await park('shipping', await owner('shipping', 1), { key: Buffer.from('order-1'), headOffset: 3, token: 't3', location: 'retry:1', headTopic: 'billing.orders.retry.1', errorCode: 'LL_HANDLER_TIMEOUT' })
  } finally {
    await db.close()
  }
  return dataDir
}

// The child-process tests run alongside the in-process one (only that one captures stdout).
describe('lifeline keys', { concurrency: true }, () => {
  test('in process: list, show, release and option checks', async (t) => {
    const db = await seeded(t)

    await t.test('list prints a table of parked keys', async () => {
      const stdout = await keys(['list', '--database', db])
      const lines = stdout.trimEnd().split('\n')
      assert.match(lines[0]!, /^GROUP\s+TOPIC\s+PARTITION\s+KEY\s+STATUS\s+HEAD\s+LOCATION\s+ERROR\s+PARKED RECORDS\s+PARKED AT\s+AGE$/)
      assert.equal(lines.length, 4, stdout)
      assert.match(stdout, /billing\s+orders\s+2\s+order-1\s+parked\s+41\s+retry:1\s+LL_HANDLER_TIMEOUT\s+3\s+\d{4}-\d\d-\d\dT[\d:.]+Z\s+\d+s\n/)
      assert.match(stdout, /billing\s+orders\s+0\s+hex:ff00fe\s+parked\s+7\s+dlq\s+LL_DECODE\s+1\s/)
      assert.match(stdout, /shipping\s+orders\s+1\s+order-1\s+parked\s+3\s+retry:1\s+LL_HANDLER_TIMEOUT\s+0\s/)
    })

    await t.test('list filters by group, topic and status, up to --limit; --json', async () => {
      const billing = await keys(['list', '--group', 'billing', '--topic', 'orders', '--status', 'parked', '--limit', '1', '--database', db])
      assert.equal(billing.trimEnd().split('\n').length, 2, billing)
      assert.match(billing, /billing\s+orders\s+2\s+order-1\s/)
      assert.equal(await keys(['list', '--status', 'released', '--database', db]), '(none)\n')

      const json = JSON.parse(await keys(['list', '--group', 'billing', '--json', '--database', db])) as Array<Record<string, unknown>>
      assert.equal(json.length, 2)
      const binary = json.find((k) => k.keyHex === 'ff00fe')!
      assert.equal(binary.key, null)
      assert.equal(binary.status, 'parked')
      assert.equal(binary.headOffset, 7)
      assert.equal(binary.headLocation, 'dlq')
      assert.equal(binary.headErrorCode, 'LL_DECODE')
      assert.equal(binary.parkedRecords, 1)
      assert.match(binary.parkedAt as string, /^\d{4}-\d\d-\d\dT[\d:.]+Z$/)
      assert.equal(json.find((k) => k.key === 'order-1')?.parkedRecords, 3)
    })

    await t.test('show prints the key, its parked records in replay order and its history', async () => {
      const stdout = await keys(['show', 'order-1', '--group', 'billing', '--topic', 'orders', '--database', db])
      assert.match(stdout, /^group:\s+billing\ntopic:\s+orders\npartition:\s+2\nkey:\s+order-1\nstatus:\s+parked\n/)
      assert.match(stdout, /^head:\s+offset 41 in retry:1 \(billing\.orders\.retry\.1\)$/m)
      assert.match(stdout, /^error:\s+LL_HANDLER_TIMEOUT: handler timed out\\nafter 5 s$/m)
      assert.match(stdout, /^parked records:\s+3$/m)
      assert.match(stdout, /^ID\s+PARTITION\s+OFFSET\s+SEQ\s+VALUE\n\d+\s+2\s+44\s+hex:deadbeef\n\d+\s+2\s+42\s+2\s+\{"status":"PAID"\}\n\d+\s+2\s+43\s+3\s+(.*)\n/m)
      assert.equal(/^\d+\s+2\s+43\s+3\s+(.*)$/m.exec(stdout)?.[1], `${LONG_VALUE.slice(0, 79)}…`)
      assert.match(stdout, /^AT\s+EVENT\s+ACTOR\s+DETAIL\n\S+Z\s+parked\s+\{.*"offset":41.*"errorCode":"LL_HANDLER_TIMEOUT".*\}$/m)

      const limited = await keys(['show', 'order-1', '-g', 'billing', '-t', 'orders', '--limit', '1', '--database', db])
      assert.match(limited, /first 1 of 3; --limit for more/)
      assert.match(limited, /^\d+\s+2\s+44\s+hex:deadbeef$/m)
      assert.doesNotMatch(limited, /\s4[23]\s/)
    })

    await t.test('show --hex finds a key that is not UTF-8 (also as list prints it); --json', async () => {
      const stdout = await keys(['show', 'hex:FF00FE', '--hex', '--group', 'billing', '--topic', 'orders', '--database', db])
      assert.match(stdout, /^key:\s+hex:ff00fe$/m)
      assert.match(stdout, /^head:\s+offset 7 in dlq \(billing\.orders\.dlq\)$/m)
      assert.match(stdout, /^\d+\s+0\s+9\s+\(null\)$/m)
      const json = JSON.parse(await keys(['show', 'ff00fe', '--hex', '-g', 'billing', '-t', 'orders', '--json', '--database', db]))
      assert.equal(json.key.keyHex, 'ff00fe')
      assert.equal(json.key.key, null)
      assert.deepEqual(json.records.map((r: { offset: number; value: unknown }) => [r.offset, r.value]), [[9, null]])
      assert.deepEqual(json.events.map((e: { event: string }) => e.event), ['parked'])
      const text = JSON.parse(await keys(['show', 'order-1', '-g', 'billing', '-t', 'orders', '--json', '--database', db]))
      assert.deepEqual(text.records.map((r: { value: unknown }) => r.value), [null, '{"status":"PAID"}', LONG_VALUE])
      assert.equal(text.records[0].valueBase64, '3q2+7w==')
      assert.deepEqual(text.records[0].headers, [{ key: 'h', valueBase64: 'dg==' }])
    })

    await t.test('show of a key that is not parked fails with LL_KEY_NOT_PARKED', async () => {
      assert.equal(await keysFails(['show', 'nope', '-g', 'billing', '-t', 'orders', '--database', db], 'LL_KEY_NOT_PARKED'), 'key "nope" of orders in group billing is not parked')
      assert.equal(await keysFails(['show', 'ff00fe', '--hex', '-g', 'shipping', '-t', 'orders', '--database', db], 'LL_KEY_NOT_PARKED'), 'key "hex:ff00fe" of orders in group shipping is not parked')
      assert.match(await keysFails(['show', 'xyz', '--hex', '-g', 'billing', '-t', 'orders', '--database', db]), /--hex: the key must be an even number of hex digits, got xyz/)
    })

    await t.test('release marks the key released (list and show say so) once; the actor defaults to $USER', async () => {
      const user = process.env.USER
      process.env.USER = 'test-operator'
      let stdout: string
      try {
        stdout = await keys(['release', 'order-1', '--group', 'billing', '--topic', 'orders', '--reason', 'fixed the handler', '--database', db])
      } finally {
        if (user === undefined) delete process.env.USER
        else process.env.USER = user
      }
      assert.match(stdout, /^released key "order-1" of orders\[2\] in group billing \(head was offset 41 in retry:1\); status: released, 3 parked records to replay\n/)
      assert.match(stdout, /the owner of partition 2 replays them in order, then forgets the key, within its parking poll interval/)
      assert.match(stdout, /note: the head \(offset 41\) was waiting in retry:1; that retry is now stale and is skipped, not run\n$/)
      assert.match(await keys(['list', '--group', 'billing', '--database', db]), /billing\s+orders\s+2\s+order-1\s+released\s+41\s+retry:1\s/)
      const shown = await keys(['show', 'order-1', '-g', 'billing', '-t', 'orders', '--database', db])
      assert.match(shown, /^released:\s+\S+Z by test-operator: fixed the handler$/m)
      assert.match(shown, /\s+parked\s+\{.*\n\S+Z\s+released\s+test-operator\s+\{"reason":"fixed the handler","headOffset":41,"headLocation":"retry:1"\}$/m)
      assert.equal(await keysFails(['release', 'order-1', '-g', 'billing', '-t', 'orders', '-r', 'again', '--database', db], 'LL_KEY_NOT_PARKED'), 'key "order-1" of orders in group billing is not parked')
    })

    await t.test('release --expect-head releases only the head it names; --hex, --actor, --json', async () => {
      assert.match(await keysFails(['release', 'ff00fe', '--hex', '-g', 'billing', '-t', 'orders', '-r', 'redriven', '--expect-head', '6', '--database', db], 'LL_KEY_NOT_PARKED'), /is not parked behind offset 6$/)
      const released = JSON.parse(await keys(['release', 'hex:ff00fe', '--hex', '-g', 'billing', '-t', 'orders', '-r', 'redriven', '--expect-head', '7', '--actor', 'alice', '--json', '--database', db]))
      assert.equal(released.keyHex, 'ff00fe')
      assert.equal(released.status, 'released')
      assert.equal(released.releasedBy, 'alice')
      assert.equal(released.releaseReason, 'redriven')
      assert.equal(released.parkedRecords, 1)
      assert.match(await keys(['list', '--status', 'parked', '--database', db]), /^GROUP.*\nshipping\s.*\n$/)
    })

    await t.test('an empty database is migrated and shows nothing', async (t2) => {
      const empty = await pgliteDataDir(t2)
      assert.equal(await keys(['list', '--database', empty]), '(none)\n')
      assert.deepEqual(JSON.parse(await keys(['list', '--json', '--database', empty])), [])
    })

    await t.test('bad options fail before the database is opened', async (t2) => {
      const never = join(await tempDir(t2), 'never-created')
      assert.match(await keysFails(['list', '--limit', '10001', '--database', never]), /^--limit must be an integer from 1 to 10000, got 10001$/)
      assert.match(await keysFails(['list', '--limit', '0', '--database', never]), /^--limit must be an integer from 1 to 10000, got 0$/)
      assert.match(await keysFails(['list', '--status', 'stuck', '--database', never]), /^--status must be parked, released or gap, got stuck$/)
      assert.match(await keysFails(['show', 'k', '-g', 'g', '-t', 't', '--limit', '2.5', '--database', never]), /^--limit must be an integer from 1 to 10000, got 2\.5$/)
      assert.match(await keysFails(['release', 'k', '-g', 'g', '-t', 't', '-r', 'x', '--expect-head', '-1', '--database', never]), /^--expect-head must be a source offset \(an integer >= 0\), got -1$/)
      assert.match(await keysFails(['release', 'k', '-g', 'g', '-t', 't', '-r', ' ', '--database', never]), /^--reason must not be empty$/)
      assert.match(await keysFails(['list', '--database', 'mysql://host/db'], 'LL_OPTIONS_INVALID'), /postgres:\/\//)
      assert.equal(existsSync(never), false, 'the database directory was not created')
    })
  })

  test('child process: releasing a key that is not parked exits 1 with the LL_KEY_NOT_PARKED message', async (t) => {
    const db = await seeded(t)
    const store = await openPglite({ dataDir: db })
    try {
      await createParkedKeys(store).release({ group: 'billing', topic: 'orders', key: 'order-1', actor: 'test', reason: 'first' })
    } finally {
      await store.close()
    }
    const again = await childFails(['release', 'order-1', '-g', 'billing', '-t', 'orders', '-r', 'again', '--database', db])
    assert.equal(again, 'lifeline: key "order-1" of orders in group billing is not parked [LL_KEY_NOT_PARKED]\n')
  })

  test('child process: a bad --limit exits 1 with a clear message', async (t) => {
    const never = join(await tempDir(t), 'never-created')
    assert.equal(await childFails(['list', '--limit', 'abc', '--database', never]), 'lifeline: --limit must be an integer from 1 to 10000, got abc\n')
    assert.equal(existsSync(never), false, 'the database directory was not created')
  })
})
