/**
 * `npm test`: finds every test file, starts a real Kafka broker (or reuses `KAFKA_BOOTSTRAP`), and runs
 * node's test runner on them. Fails when it finds no test file (node 20 would silently pass).
 *
 *   npm test                       # all tests but the long fault tests (test/faults)
 *   npm test -- test/kafka         # only files under these paths
 *   npm run test:faults            # the fault tests: the crash-point matrix, broker/database/zombie faults
 *
 * Environment: KAFKA_BOOTSTRAP (reuse a broker), DATABASE_URL (also run store tests on that PostgreSQL
 * server; PGlite always runs), LIFELINE_TEST_CONCURRENCY (files in parallel, default 2).
 */
import { spawn } from 'node:child_process'
import { readdirSync, statSync } from 'node:fs'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join, relative, resolve } from 'node:path'
import { startKafka, type KafkaCluster } from '../src/dev/kafka-launcher.js'
import { clientVersion } from '../src/kafka/index.js'

/** Folders of long fault tests: run only when named (`npm run test:faults`), not by a bare `npm test`. */
const NAMED_ONLY = new Set(['faults'])

function findTests(path: string, out: string[] = [], top = true): string[] {
  const st = statSync(path)
  if (st.isFile()) {
    if (path.endsWith('.test.ts')) out.push(path)
    return out
  }
  for (const entry of readdirSync(path).sort()) {
    if (entry === 'node_modules' || entry.startsWith('.')) continue
    if (top && roots.length === 0 && NAMED_ONLY.has(entry)) continue
    findTests(join(path, entry), out, false)
  }
  return out
}

const roots = process.argv.slice(2).filter((a) => !a.startsWith('-'))
const passThrough = process.argv.slice(2).filter((a) => a.startsWith('-'))
const files = (roots.length > 0 ? roots : ['test']).flatMap((r) => findTests(resolve(r)))
if (files.length === 0) {
  process.stderr.write(`no test files (*.test.ts) found under ${(roots.length > 0 ? roots : ['test']).join(', ')}: refusing to report success\n`)
  process.exit(1)
}

let cluster: KafkaCluster | undefined
let stateDir: string | undefined
let exitCode = 1
try {
  let bootstrap = process.env.KAFKA_BOOTSTRAP
  if (bootstrap) {
    console.log(`# kafka: reusing KAFKA_BOOTSTRAP=${bootstrap}`)
  } else {
    stateDir = await mkdtemp(join(tmpdir(), 'lifeline-test-kafka-'))
    cluster = await startKafka({ brokers: 1, stateDir, fresh: true })
    bootstrap = cluster.bootstrap
    console.log(`# kafka: Apache Kafka ${cluster.version} broker (real, KRaft) at ${bootstrap}, ready in ${cluster.startupMs} ms`)
  }
  console.log(`# kafka client: ${clientVersion()}`)
  console.log(
    process.env.DATABASE_URL
      ? `# database: PostgreSQL server at ${process.env.DATABASE_URL.replace(/\/\/[^@/]*@/, '//***@')} and embedded PGlite`
      : '# database: embedded PGlite only (set DATABASE_URL to also run against a PostgreSQL server)',
  )
  console.log(`# test files: ${files.length}`)

  const concurrency = process.env.LIFELINE_TEST_CONCURRENCY ?? '2'
  const child = spawn(
    process.execPath,
    [
      '--import',
      'tsx',
      '--test',
      `--test-concurrency=${concurrency}`,
      // TAP ('# pass N' summary lines) on every Node version: Node 23+ defaults to the spec reporter.
      ...(passThrough.some((a) => a.startsWith('--test-reporter')) ? [] : ['--test-reporter=tap']),
      ...passThrough,
      ...files.map((f) => relative(process.cwd(), f)),
    ],
    { stdio: 'inherit', env: { ...process.env, KAFKA_BOOTSTRAP: bootstrap, LIFELINE_LOG_LEVEL: process.env.LIFELINE_LOG_LEVEL ?? 'silent' } },
  )
  const stop = (sig: NodeJS.Signals) => child.kill(sig)
  process.on('SIGINT', stop)
  process.on('SIGTERM', stop)
  exitCode = await new Promise<number>((res) => child.on('exit', (code, signal) => res(code ?? (signal ? 1 : 0))))
} catch (err) {
  process.stderr.write(`test run could not start: ${(err as Error).message}\n`)
  exitCode = 1
} finally {
  await cluster?.close()
  if (stateDir) await rm(stateDir, { recursive: true, force: true })
}
process.exit(exitCode)
