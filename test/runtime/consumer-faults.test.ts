import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { appendFileSync, existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, test } from 'node:test'
import { createConsumer } from '../../src/runtime/consumer.js'
import { brokers, producer, randomName, topic, waitFor, defer } from '../helpers/kafka.js'
import { fastRetry } from '../helpers/lifeline.js'

const lines = (file: string) => (existsSync(file) ? readFileSync(file, 'utf8').split('\n').filter(Boolean) : [])

describe('consumer runtime under crashes and rebalances', () => {
  test('kill -9 of a consumer process mid-processing: a restarted consumer loses nothing', async (t) => {
    const source = await topic(t, { partitions: 3 })
    const groupId = randomName('crash')
    const total = 300
    await producer(t).send(Array.from({ length: total }, (_, i) => ({ topic: source, key: `k${i % 30}`, value: `{"i":${i}}` })))
    const dir = mkdtempSync(join(tmpdir(), 'lifeline-crash-'))
    defer(t, () => rmSync(dir, { recursive: true, force: true }))
    const out = join(dir, 'effects.log')

    const child = spawn(process.execPath, ['--import', 'tsx', new URL('../fixtures/consume-to-file.ts', import.meta.url).pathname], {
      env: { ...process.env, TOPIC: source, GROUP: groupId, OUT: out, DELAY_MS: '20' },
      stdio: ['ignore', 'pipe', 'inherit'],
    })
    defer(t, () => child.kill('SIGKILL'))
    await waitFor(() => lines(out).length >= 60, 'the child to apply some records', 60_000)
    child.kill('SIGKILL')
    await new Promise((r) => child.once('exit', r))
    const beforeCrash = lines(out).length
    assert.ok(beforeCrash < total, 'the crash happened mid-processing')

    const c = createConsumer({
      brokers: brokers(), groupId, service: 'crash', topics: [source], retry: fastRetry, commitIntervalMs: 100,
      handler: (m) => appendFileSync(out, `${m.partition}:${m.offset}:${m.keyText}\n`),
    })
    defer(t, () => c.close())
    await c.start()
    const unique = () => new Set(lines(out).map((l) => l.split(':').slice(0, 2).join(':')))
    await waitFor(() => unique().size === total, 'every record to have an effect', 60_000)
    // At-least-once: some records may run twice (finished before the crash, not yet committed), none is lost.
    const duplicates = lines(out).length - total
    assert.ok(duplicates >= 0 && duplicates < beforeCrash + 50, `duplicates: ${duplicates}`)
  })

  test('two consumers joining and leaving under load: no loss, per-key order, commits never pass unfinished offsets', async (t) => {
    const source = await topic(t, { partitions: 4 })
    const groupId = randomName('rebalance')
    const keys = 40
    const perKey = 15
    await producer(t).send(Array.from({ length: keys * perKey }, (_, i) => ({ topic: source, key: `k${i % keys}`, value: JSON.stringify({ key: `k${i % keys}`, seq: Math.floor(i / keys) }) })))

    const applied = new Map<string, number[]>()
    const done = new Map<number, Set<number>>() // partition → finished offsets
    const violations: string[] = []
    const handler = async (m: { value: unknown; partition: number; offset: number }) => {
      await new Promise((r) => setTimeout(r, 1 + Math.random() * 4))
      const { key, seq } = m.value as { key: string; seq: number }
      applied.set(key, [...(applied.get(key) ?? []), seq])
      if (!done.has(m.partition)) done.set(m.partition, new Set())
      done.get(m.partition)!.add(m.offset)
    }
    const checkCommit = (offsets: Array<{ partition: number; offset: number }>) => {
      for (const { partition, offset } of offsets) {
        for (let o = 0; o < offset; o++) if (!done.get(partition)?.has(o)) violations.push(`committed ${partition}@${offset} before offset ${o} finished`)
      }
    }
    const make = () => {
      const c = createConsumer({ brokers: brokers(), groupId, service: 'svc', topics: [source], retry: fastRetry, commitIntervalMs: 50, concurrency: 16, handler })
      c.on('commit', checkCommit)
      defer(t, () => c.close())
      return c
    }
    const count = () => [...applied.values()].reduce((n, s) => n + s.length, 0)
    const a = make()
    await a.start()
    await waitFor(() => count() >= 100, 'A to make progress')
    const b = make()
    await b.start()
    await waitFor(() => b.stats().assigned.length > 0, 'B to receive partitions', 60_000)
    await waitFor(() => count() >= 350, 'both to make progress', 60_000)
    await a.close()
    await waitFor(() => new Set([...applied.entries()].flatMap(([k, s]) => s.map((q) => `${k}:${q}`))).size === keys * perKey, 'every record applied', 60_000)

    assert.deepEqual(violations, [])
    for (const [key, seqs] of applied) {
      // A replay after a rebalance may repeat records, but first applications must be in sequence order.
      const firsts = seqs.filter((s, i) => seqs.indexOf(s) === i)
      assert.deepEqual(firsts, [...Array(perKey).keys()], `key ${key} applied out of order: ${seqs.join(',')}`)
    }
  })
})
