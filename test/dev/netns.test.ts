import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { createServer } from 'node:net'
import { describe, test } from 'node:test'
import { promisify } from 'node:util'
import { createNetns, netnsSupport } from '../../src/dev/netns.js'
import { defer } from '../helpers/cleanup.js'

const run = promisify(execFile)
const support = await netnsSupport()

/** Runs a TCP connect from inside the namespace (node, 1.5 s timeout); resolves 'ok' or the error. */
async function connectFrom(exec: readonly string[], host: string, port: number): Promise<string> {
  const script = `const s=require('net').connect({host:'${host}',port:${port}});s.setTimeout(1500,()=>{console.log('timeout');process.exit(0)});s.on('connect',()=>{console.log('ok');process.exit(0)});s.on('error',e=>{console.log(e.code);process.exit(0)})`
  const { stdout } = await run(exec[0]!, [...exec.slice(1), process.execPath, '-e', script])
  return stdout.trim()
}

describe('network namespaces', { skip: support.ok ? false : `skipped: ${support.ok ? '' : support.reason}` }, () => {
  test('a process inside reaches the host end; link down is a partition (timeout, no reset); up heals', async (t) => {
    const name = `t${randomBytes(3).toString('hex')}`
    const ns = await createNetns({ name, subnet: [10, 213, 250] })
    defer(t, () => ns.close())
    const server = createServer((s) => s.end())
    await new Promise<void>((r) => server.listen(0, ns.hostIp, r))
    defer(t, () => new Promise<void>((r) => server.close(() => r())))
    const port = (server.address() as { port: number }).port

    assert.equal(await connectFrom(ns.exec, ns.hostIp, port), 'ok')
    // The namespace's loopback is its own: the host's 127.0.0.1 services are not there.
    assert.equal(await connectFrom(ns.exec, '127.0.0.1', port), 'ECONNREFUSED')
    await ns.down()
    assert.notEqual(await connectFrom(ns.exec, ns.hostIp, port), 'ok')
    await ns.up()
    assert.equal(await connectFrom(ns.exec, ns.hostIp, port), 'ok')
    await ns.close()
    const { stdout } = await run('ip', ['netns', 'list'])
    assert.doesNotMatch(stdout, new RegExp(`^${name}\\b`, 'm'))
  })
})
