import assert from 'node:assert/strict'
import { test } from 'node:test'
import { serverProperties, type NodeSpec } from '../../src/dev/broker-config.js'

const node = (id: number): NodeSpec => ({ id, port: 9000 + id, controllerPort: 9100 + id, logDir: `/tmp/n${id}` })

function props(text: string): Map<string, string> {
  return new Map(text.split('\n').filter((l) => l.includes('=')).map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]))
}

test('a single node is a standalone combined broker+controller with replication factor 1', () => {
  const p = props(serverProperties(node(1), [node(1)]))
  assert.equal(p.get('process.roles'), 'broker,controller')
  assert.equal(p.get('listeners'), 'PLAINTEXT://127.0.0.1:9001,CONTROLLER://127.0.0.1:9101')
  assert.equal(p.get('controller.quorum.bootstrap.servers'), '127.0.0.1:9101')
  assert.equal(p.has('controller.quorum.voters'), false)
  assert.equal(p.get('offsets.topic.replication.factor'), '1')
  assert.equal(p.get('min.insync.replicas'), '1')
  assert.equal(p.get('auto.create.topics.enable'), 'false')
  // Kafka refuses a dedupe buffer below 1 MiB per cleaner thread.
  assert.ok(Number(p.get('log.cleaner.dedupe.buffer.size')) > 1024 * 1024)
})

test('three nodes share a static voter set and replicate internal topics three ways', () => {
  const nodes = [node(1), node(2), node(3)]
  for (const n of nodes) {
    const p = props(serverProperties(n, nodes))
    assert.equal(p.get('node.id'), String(n.id))
    assert.equal(p.get('controller.quorum.voters'), '1@127.0.0.1:9101,2@127.0.0.1:9102,3@127.0.0.1:9103')
    assert.equal(p.get('log.dirs'), `/tmp/n${n.id}`)
    assert.equal(p.get('offsets.topic.replication.factor'), '3')
    assert.equal(p.get('transaction.state.log.min.isr'), '2')
    assert.equal(p.get('min.insync.replicas'), '2')
  }
})

test('cluster ids never start with "-" (regression: StorageTool read such an id as an option)', async () => {
  const { newClusterId } = await import('../../src/dev/kafka-launcher.js')
  let calls = 0
  // The first draw encodes to an id starting with '-' (0xf8 → '-' in base64url); the second must be used.
  const id = newClusterId((n) => (calls++ === 0 ? Buffer.alloc(n, 0xf8) : Buffer.alloc(n, 1)))
  assert.equal(calls, 2)
  assert.ok(!id.startsWith('-'))
  assert.equal(id.length, 22)
  for (let i = 0; i < 2000; i++) assert.ok(!newClusterId().startsWith('-'))
})
