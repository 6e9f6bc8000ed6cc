import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { test } from 'node:test'
import { promisify } from 'node:util'
import { admin, brokers, randomName, topic, defer } from '../helpers/kafka.js'

const run = promisify(execFile)
const cli = new URL('../../bin/lifeline.js', import.meta.url).pathname

test('lifeline topics ensure creates the DLQ and prints a table; --json for scripts', async (t) => {
  const source = await topic(t, { partitions: 3 })
  const service = randomName('cli')
  const a = admin(t)
  defer(t, () => a.deleteTopics([`${service}.${source}.dlq`]))
  const { stdout } = await run(process.execPath, [cli, 'topics', 'ensure', '--service', service, '--topic', source, '--brokers', brokers().join(',')])
  assert.match(stdout, new RegExp(`${service}\\.${source}\\.dlq\\s+dlq\\s+${source}\\s+3\\s+created`))
  const again = await run(process.execPath, [cli, 'topics', 'ensure', '--service', service, '--topic', source, '--json'], { env: { ...process.env, KAFKA_BOOTSTRAP: brokers().join(',') } })
  assert.equal(JSON.parse(again.stdout)[0].created, false)
})

test('the CLI reports bad input with a clear message and exit code 1', async () => {
  await assert.rejects(run(process.execPath, [cli, 'topics', 'ensure', '--service', 's', '--topic', 't', '--retention-days', 'abc', '--brokers', 'x:1']), (err: { code: number; stderr: string }) => {
    assert.equal(err.code, 1)
    assert.match(err.stderr, /--retention-days must be a positive number/)
    return true
  })
  await assert.rejects(run(process.execPath, [cli, 'dev', 'kafka', 'start', '--brokers', '2']), (err: { code: number; stderr: string }) => /--brokers must be 1 or 3/.test(err.stderr) && err.code === 1)
})

test('lifeline dev kafka status exits 3 when nothing runs in the directory', async () => {
  await assert.rejects(run(process.execPath, [cli, 'dev', 'kafka', 'status', '--dir', `/tmp/${randomName('none')}`]), (err: { code: number; stdout: string }) => err.code === 3 && /no local Kafka recorded/.test(err.stdout))
})
