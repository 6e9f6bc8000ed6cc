import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { mkdtempSync, realpathSync, rmSync } from 'node:fs'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { describe, test, type TestContext } from 'node:test'
import { isLauncherError } from '../../src/dev/errors.js'
import { resolveKafkaJars } from '../../src/dev/kafka-jars.js'
import { kafkaStatus, readClusterState, startKafka, stopKafka } from '../../src/dev/kafka-launcher.js'
import { alive } from '../../src/dev/processes.js'
import { createAdmin, createProducer } from '../../src/kafka/index.js'
import { waitFor, defer } from '../helpers/kafka.js'

function tempDir(t: TestContext): string {
  const dir = mkdtempSync(join(tmpdir(), 'lifeline-launcher-'))
  defer(t, () => rmSync(dir, { recursive: true, force: true }))
  return dir
}

/** Runs `fn` with environment variables replaced, restoring them afterwards. */
async function withEnv<T>(env: Record<string, string | undefined>, fn: () => Promise<T>): Promise<T> {
  const saved = Object.fromEntries(Object.keys(env).map((k) => [k, process.env[k]]))
  const apply = (values: Record<string, string | undefined>) => {
    for (const [k, v] of Object.entries(values)) {
      if (v === undefined) delete process.env[k]
      else process.env[k] = v
    }
  }
  apply(env)
  try {
    return await fn()
  } finally {
    apply(saved)
  }
}

describe('local Kafka launcher', () => {
  test('the jar cache is reused: a second resolve runs no Maven', async () => {
    const first = await resolveKafkaJars()
    const second = await resolveKafkaJars()
    assert.equal(second.resolved, false)
    assert.equal(second.libDir, first.libDir)
  })

  test('missing Java is a clear error', async (t) => {
    await withEnv({ JAVA_HOME: join(tempDir(t), 'no-jdk') }, async () => {
      await assert.rejects(startKafka({ stateDir: tempDir(t) }), (err: unknown) => {
        assert.ok(isLauncherError(err, 'LL_LAUNCHER_JAVA_MISSING'))
        assert.match((err as Error).message, /Java 17\+/)
        return true
      })
    })
  })

  test('missing Maven with an empty jar cache is a clear error', async (t) => {
    const javaHome = dirname(dirname(realpathSync('/usr/bin/java')))
    await withEnv({ PATH: '/nonexistent', JAVA_HOME: javaHome }, async () => {
      await assert.rejects(startKafka({ stateDir: tempDir(t), jarCacheDir: tempDir(t) }), (err: unknown) => {
        assert.ok(isLauncherError(err, 'LL_LAUNCHER_MAVEN_MISSING'))
        assert.match((err as Error).message, /mvn/)
        return true
      })
    })
  })

  test('a busy port is refused before anything starts', async (t) => {
    const server = createServer()
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
    defer(t, () => server.close())
    const port = (server.address() as { port: number }).port
    await assert.rejects(startKafka({ stateDir: tempDir(t), ports: [port] }), (err: unknown) => {
      assert.ok(isLauncherError(err, 'LL_LAUNCHER_PORT_BUSY'))
      assert.match((err as Error).message, new RegExp(String(port)))
      return true
    })
  })

  test('a broker that dies at start is reported with its log tail', async (t) => {
    // A 1 MiB heap is below the JVM's minimum: the process exits at once with an error in its log.
    await assert.rejects(startKafka({ stateDir: tempDir(t), heapMb: 1 }), (err: unknown) => {
      assert.ok(isLauncherError(err, 'LL_LAUNCHER_START'))
      assert.match((err as Error).message, /exited during start-up[\s\S]*heap/i)
      return true
    })
  })

  test('a broker started by a process that is killed with SIGKILL does not outlive it', async (t) => {
    const stateDir = tempDir(t)
    const script = `import { startKafka } from ${JSON.stringify(new URL('../../src/dev/kafka-launcher.ts', import.meta.url).href)}
const c = await startKafka({ stateDir: ${JSON.stringify(stateDir)} })
console.log('READY ' + c.state.nodes[0].pid)
setInterval(() => {}, 1000)`
    const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] })
    defer(t, () => child.kill('SIGKILL'))
    const brokerPid = await new Promise<number>((resolve, reject) => {
      let out = ''
      child.stdout.on('data', (d: Buffer) => {
        out += d.toString()
        const m = /READY (\d+)/.exec(out)
        if (m) resolve(Number(m[1]))
      })
      child.on('exit', (code) => reject(new Error(`starter exited with ${code} before the broker was ready: ${out}`)))
    })
    assert.ok(alive(brokerPid))
    child.kill('SIGKILL')
    await waitFor(() => !alive(brokerPid), 'the orphaned broker to stop', 60_000)
  })

  test('a detached broker is found by status, stopped by stop, and reaped by the next start', async (t) => {
    const stateDir = tempDir(t)
    const first = await startKafka({ stateDir, tieToParent: false })
    const firstPid = first.state.nodes[0]!.pid
    const status = await kafkaStatus(stateDir)
    assert.equal(status?.nodes[0]?.running, true)
    assert.equal(status?.nodes[0]?.reachable, true)

    // Start again in the same folder without stopping: the leftover broker is reaped, not duplicated.
    const second = await startKafka({ stateDir, tieToParent: false })
    assert.equal(alive(firstPid), false)
    const stopped = await stopKafka(stateDir)
    assert.equal(stopped.nodes[0]!.pid, second.state.nodes[0]!.pid)
    assert.equal(alive(second.state.nodes[0]!.pid), false)
    assert.equal(readClusterState(stateDir), undefined)
    await assert.rejects(stopKafka(stateDir), (err: unknown) => isLauncherError(err, 'LL_LAUNCHER_NOT_RUNNING'))
  })

  test('a cluster of three keeps accepting acks=all writes while one broker is down', async (t) => {
    const cluster = await startKafka({ brokers: 3, stateDir: tempDir(t), heapMb: 384 })
    defer(t, () => cluster.close())
    assert.equal(cluster.brokers.length, 3)
    const admin = createAdmin({ brokers: cluster.brokers })
    const producer = createProducer({ brokers: cluster.brokers, deliveryTimeoutMs: 60_000 })
    defer(t, async () => {
      await producer.close()
      await admin.close()
    })
    await admin.createTopics([{ topic: 'replicated', partitions: 3, replicationFactor: 3 }])
    // createTopics waited until one broker knew the topic; the describe may ask another that does not yet.
    let description: Awaited<ReturnType<typeof admin.describeTopics>>[number] | undefined
    await waitFor(async () => {
      try {
        ;[description] = await admin.describeTopics(['replicated'])
        return true
      } catch (err) {
        if (!/Unknown topic/.test(String(err))) throw err
        return false
      }
    }, 'a broker to describe the new topic', 10_000)
    for (const p of description!.partitions) assert.equal(p.replicas.length, 3)

    await cluster.stopBroker(2, { hard: true })
    const acks = await producer.send(Array.from({ length: 30 }, (_, i) => ({ topic: 'replicated', key: `k${i}`, value: `v${i}` })))
    assert.equal(acks.length, 30)
    await cluster.startBroker(2)
    const offsets = await admin.topicOffsets('replicated')
    assert.equal(offsets.reduce((sum, p) => sum + p.high, 0), 30)
  })
})
