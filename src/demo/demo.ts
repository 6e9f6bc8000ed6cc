/**
 * The live demo: a real local Kafka broker, the embedded database (or DATABASE_URL), an order-events
 * producer and a consumer that applies each event to a table, printing what happens.
 */
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { startKafka, type KafkaCluster } from '../dev/kafka-launcher.js'
import { createAdmin, createConsumer, createProducer, clientVersion } from '../kafka/index.js'
import { databaseFromEnv, describeDatabase, loadMigrations, migrate } from '../store/index.js'

export interface DemoOptions {
  orders: number
  follow: boolean
  signal: AbortSignal
  print(line: string): void
}

const TOPIC = 'demo.orders'
const STATUSES = ['CREATED', 'PAID', 'SHIPPED'] as const

export async function runDemo(options: DemoOptions): Promise<void> {
  const { print } = options
  let cluster: KafkaCluster | undefined
  let bootstrap = process.env.KAFKA_BOOTSTRAP
  if (bootstrap) print(`kafka: using KAFKA_BOOTSTRAP=${bootstrap}`)
  else {
    print('kafka: starting a local Apache Kafka broker (the first run downloads its jars with Maven)...')
    cluster = await startKafka({ brokers: 1, stateDir: join(process.cwd(), '.lifeline', 'kafka') })
    bootstrap = cluster.bootstrap
    print(`kafka: Apache Kafka ${cluster.version} ready at ${bootstrap} in ${cluster.startupMs} ms (${clientVersion()})`)
  }
  const brokers = bootstrap.split(',')
  const db = await databaseFromEnv()
  const admin = createAdmin({ brokers })
  const producer = createProducer({ brokers })
  const consumer = createConsumer({ brokers, groupId: 'lifeline-demo' })
  try {
    print(`database: ${await describeDatabase(db)}`)
    const applied = await migrate(db, await loadMigrations(join(dirname(fileURLToPath(import.meta.url)), 'migrations')), { table: 'demo_migrations' })
    if (applied.length > 0) print(`database: applied ${applied.map((m) => m.file).join(', ')}`)
    await db.query('delete from demo_orders')

    const created = await admin.createTopics([{ topic: TOPIC, partitions: 3 }])
    print(created.length > 0 ? `topic: created ${TOPIC} (3 partitions)` : `topic: ${TOPIC} exists`)

    consumer.subscribe([TOPIC])
    let produced = 0
    const produce = async (count: number) => {
      const records = Array.from({ length: count }, () => {
        const n = produced++
        const orderId = `order-${Math.floor(n / STATUSES.length)}`
        const status = STATUSES[n % STATUSES.length]!
        return { topic: TOPIC, key: orderId, value: JSON.stringify({ orderId, status, amount: 1000 + (n % 7) * 250 }), headers: [{ key: 'event-id', value: Buffer.from(`evt-${n}`) }] }
      })
      const acks = await producer.send(records)
      for (const [i, ack] of acks.entries()) print(`produce  ${records[i]!.key} ${JSON.parse(records[i]!.value).status} -> partition ${ack.partition} offset ${ack.offset}`)
    }
    await produce(options.orders)

    let consumed = 0
    const deadline = () => (options.follow ? Number.POSITIVE_INFINITY : Date.now() + 30_000)
    let until = deadline()
    let lastProduce = Date.now()
    while (!options.signal.aborted && (consumed < produced || options.follow) && Date.now() < until) {
      const records = await consumer.poll(100, 200)
      for (const r of records) {
        const event = JSON.parse(r.value?.toString() ?? '{}') as { orderId: string; status: string; amount: number }
        await db.query(
          `insert into demo_orders (order_id, status, amount, source_topic, source_partition, source_offset)
           values ($1, $2, $3, $4, $5, $6)
           on conflict (order_id) do update set status = excluded.status, source_offset = excluded.source_offset, applied_at = now()`,
          [event.orderId, event.status, event.amount, r.topic, r.partition, r.offset],
        )
        print(`consume  ${event.orderId} ${event.status} <- partition ${r.partition} offset ${r.offset}, applied to demo_orders`)
        consumed++
      }
      if (records.length > 0) {
        // Commit after the effect (at-least-once): the next offset to read per partition.
        const next = new Map<string, { topic: string; partition: number; offset: number }>()
        for (const r of records) next.set(`${r.topic}:${r.partition}`, { topic: r.topic, partition: r.partition, offset: r.offset + 1 })
        await consumer.commit([...next.values()])
        until = deadline()
      }
      if (options.follow && Date.now() - lastProduce > 1000) {
        lastProduce = Date.now()
        await produce(1)
      }
    }
    const { rows } = await db.query<{ status: string; n: number }>('select status, count(*)::int as n from demo_orders group by status order by status')
    print(`summary: produced ${produced}, consumed ${consumed}; orders by latest status: ${rows.map((r) => `${r.status}=${r.n}`).join(', ')}`)
    if (consumed < produced) throw new Error(`only ${consumed} of ${produced} events were consumed within 30 s`)
  } finally {
    await consumer.close()
    await producer.close()
    await admin.close()
    await db.close()
    if (cluster) {
      print('kafka: stopping the local broker')
      await cluster.close()
    }
  }
}
