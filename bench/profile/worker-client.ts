/**
 * Can a retry-tier or DLQ copy be produced from a worker thread? (issue 14, hol notes: "The failure path off
 * the main thread".) Runs, in a child process, Lifeline's producer (src/kafka/producer.ts) inside a
 * `worker_threads` Worker: connect, send one record, close. Prints how the child ended.
 *
 * The Kafka client's native binding initialises its callback dispatcher on `uv_default_loop()` (the main
 * thread's event loop: src/callbacks.cc in @confluentinc/kafka-javascript), so a client made in a worker
 * delivers its events to the main thread's loop with the worker's handles, and the process dies at the
 * first event. `KAFKA_BOOTSTRAP=... node --import tsx bench/profile/worker-client.ts`
 *
 * @module
 */
import { spawnSync } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads'

const self = fileURLToPath(import.meta.url)
const bootstrap = process.env.KAFKA_BOOTSTRAP
if (!bootstrap) throw new Error('KAFKA_BOOTSTRAP is required (lifeline dev kafka start prints it)')

if (!isMainThread && workerData === 'producer') {
  // The worker: Lifeline's producer, one record.
  const { createProducer } = await import('../../src/kafka/producer.js')
  const producer = createProducer({ brokers: bootstrap.split(',') })
  await producer.connect()
  parentPort!.postMessage('connected')
  const acks = await producer.send([{ topic: 'lifeline-worker-client-probe', value: Buffer.from('probe') }])
  parentPort!.postMessage(`acknowledged at offset ${acks[0]?.offset}`)
  await producer.close()
  parentPort!.postMessage('closed')
} else if (process.argv[2] === 'child') {
  // The child: starts the worker (tsx registered in it: a worker does not inherit the loader hooks).
  const code = `import(${JSON.stringify(import.meta.resolve('tsx/esm/api'))}).then((tsx) => { tsx.register(); return import(${JSON.stringify(import.meta.url)}) })`
  const worker = new Worker(code, { eval: true, workerData: 'producer' })
  worker.on('message', (m) => console.log(`worker: ${String(m)}`))
  worker.on('error', (err) => console.log(`worker error: ${err.message}`))
  worker.on('exit', (c) => console.log(`worker exited with code ${c}`))
} else {
  const run = spawnSync(process.execPath, ['--import', 'tsx', self, 'child'], { encoding: 'utf8', timeout: 60_000, env: process.env })
  console.log(run.stdout.trim())
  const fatal = run.stderr.split('\n').find((l) => /FATAL|Segmentation|Abort/i.test(l))
  console.log(`child process: ${run.signal === null ? `exit code ${run.status}` : `killed by ${run.signal}`}${fatal ? ` (${fatal.trim()})` : ''}`)
  console.log(run.signal === null && run.status === 0 && run.stdout.includes('closed') ? 'a producer works in a worker thread' : 'a producer does not work in a worker thread: the process died')
}
