/**
 * Header fidelity: Kafka tells a null header value (length -1 on the wire) from an empty one (length 0).
 * Lifeline's producers and consumer keep the difference, checked against Kafka's own Java console tools.
 */
import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import type { TestContext } from 'node:test'
import { describe, test } from 'node:test'
import { promisify } from 'node:util'
import { javaCommand, resolveKafkaJars } from '../../src/dev/kafka-jars.js'
import { createTransactionalProducer, type ConsumedRecord, type KafkaHeader } from '../../src/kafka/index.js'
import { bindingKeepsNullHeaders, fromNativeHeaders, toNativeHeaders } from '../../src/kafka/native.js'
import { brokers, consumer, defer, pollUntil, producer, randomName, topic } from '../helpers/kafka.js'

const run = promisify(execFile)

/** The three kinds of header value, in one order: null, empty, and a normal one. */
const SENT: KafkaHeader[] = [
  { key: 'a', value: null },
  { key: 'b', value: Buffer.alloc(0) },
  { key: 'c', value: Buffer.from('x') },
]

async function readAll(t: TestContext, name: string, count: number): Promise<ConsumedRecord[]> {
  const c = consumer(t, { groupId: randomName('hdr') })
  c.subscribe([name])
  const records = await pollUntil(c, count)
  assert.equal(records.length, count, `${count} records arrived`)
  return records.sort((x, y) => x.offset - y.offset)
}

/** Java's ConsoleConsumer output for the first `max` records of `name`: `headers<TAB>value`, a null header value printed as <NULL>. */
async function javaConsume(name: string, max: number): Promise<string[]> {
  const { classpath } = await resolveKafkaJars()
  const { stdout } = await run(
    javaCommand(),
    ['-cp', classpath, 'org.apache.kafka.tools.consumer.ConsoleConsumer', '--bootstrap-server', brokers().join(','), '--topic', name, '--from-beginning', '--max-messages', String(max),
      '--formatter-property', 'print.headers=true', '--formatter-property', 'null.literal=<NULL>', '--timeout-ms', '60000'],
    { timeout: 120_000 },
  )
  return stdout.split('\n').filter((line) => line !== '')
}

/** Writes one record with Java's ConsoleProducer: `headers<TAB>value`, `<NULL>` standing for null. */
async function javaProduce(name: string, line: string): Promise<void> {
  const { classpath } = await resolveKafkaJars()
  const child = execFile(
    javaCommand(),
    ['-cp', classpath, 'org.apache.kafka.tools.ConsoleProducer', '--bootstrap-server', brokers().join(','), '--topic', name,
      '--reader-property', 'parse.headers=true', '--reader-property', 'null.marker=<NULL>'],
    { timeout: 120_000 },
  )
  const exited = new Promise<void>((resolve, reject) => child.once('exit', (code) => (code === 0 ? resolve() : reject(new Error(`ConsoleProducer exited with ${code}`)))))
  child.stdin!.end(`${line}\n`)
  await exited
}

describe('header fidelity (null vs empty header values)', () => {
  test('the installed Kafka binding carries the null-header patch (scripts/patch-kafka-javascript.sh)', () => {
    assert.equal(bindingKeepsNullHeaders, true, 'run scripts/setup.sh: it patches and rebuilds @confluentinc/kafka-javascript (docs/headers.md)')
  })

  test('conversion to and from the binding keeps null, empty and normal values apart (pure)', () => {
    assert.deepEqual(toNativeHeaders(SENT), [{ a: null }, { b: '' }, { c: Buffer.from('x') }])
    assert.deepEqual(fromNativeHeaders([{ a: null }, { b: Buffer.alloc(0) }, { c: Buffer.from('x') }]), SENT)
    assert.equal(toNativeHeaders([]), undefined)
  })

  test('a null, an empty and a normal header value sent through Lifeline\'s producer and transactional producer arrive at Lifeline\'s consumer exactly as sent', async (t) => {
    const name = await topic(t, { prefix: 'hdr' })
    await producer(t).send([{ topic: name, value: 'plain', headers: SENT }])
    const tx = createTransactionalProducer({ brokers: brokers(), transactionalId: randomName('hdr-tx') })
    defer(t, () => tx.close())
    await tx.begin()
    await tx.send([{ topic: name, value: 'transactional', headers: SENT }])
    await tx.commit()

    const records = await readAll(t, name, 2)
    for (const r of records) assert.deepEqual(r.headers, SENT, `headers of the ${r.value!.toString()} record`)
  })

  test('cross-check with Kafka\'s Java console tools: Java reads Lifeline\'s null as null and empty as empty, and Lifeline reads Java\'s the same way', async (t) => {
    const name = await topic(t, { prefix: 'hdr-java' })
    await producer(t).send([{ topic: name, value: 'from-lifeline', headers: SENT }])
    await javaProduce(name, 'a:<NULL>,b:,c:x\tfrom-java')

    assert.deepEqual(await javaConsume(name, 2), ['a:<NULL>,b:,c:x\tfrom-lifeline', 'a:<NULL>,b:,c:x\tfrom-java'])
    const records = await readAll(t, name, 2)
    assert.deepEqual(records.map((r) => r.value!.toString()), ['from-lifeline', 'from-java'])
    assert.deepEqual(records[1]!.headers, SENT, 'the Java producer\'s headers as Lifeline\'s consumer reads them')
  })
})
