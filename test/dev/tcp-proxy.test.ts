import assert from 'node:assert/strict'
import { connect, createServer, type Socket } from 'node:net'
import { describe, test, type TestContext } from 'node:test'
import { startTcpProxy } from '../../src/dev/tcp-proxy.js'
import { defer } from '../helpers/cleanup.js'

async function echoServer(t: TestContext): Promise<number> {
  const sockets = new Set<Socket>()
  const server = createServer((s) => {
    sockets.add(s)
    s.on('close', () => sockets.delete(s))
    s.on('error', () => sockets.delete(s))
    s.pipe(s)
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  defer(t, () => new Promise<void>((r) => {
    for (const s of sockets) s.destroy()
    server.close(() => r())
  }))
  return (server.address() as { port: number }).port
}

/** Sends `text` and resolves with the echo and how long the round trip took. */
function roundTrip(socket: Socket, text: string, timeoutMs = 5000): Promise<{ reply: string; ms: number }> {
  const started = Date.now()
  return new Promise((resolve, reject) => {
    let got = ''
    const timer = setTimeout(() => {
      socket.off('data', onData)
      reject(new Error(`no echo of ${text} within ${timeoutMs} ms`))
    }, timeoutMs)
    const onData = (d: Buffer) => {
      got += d.toString()
      if (got.endsWith(text)) {
        clearTimeout(timer)
        socket.off('data', onData)
        resolve({ reply: got, ms: Date.now() - started })
      }
    }
    socket.on('data', onData)
    socket.write(text)
  })
}

async function client(t: TestContext, port: number): Promise<Socket> {
  const s = connect({ host: '127.0.0.1', port })
  defer(t, () => s.destroy())
  s.on('error', () => {})
  await new Promise<void>((r) => s.once('connect', () => r()))
  return s
}

describe('TCP proxy', () => {
  test('forwards bytes both ways, in order', async (t) => {
    const proxy = await startTcpProxy({ target: { host: '127.0.0.1', port: await echoServer(t) } })
    defer(t, () => proxy.close())
    const s = await client(t, proxy.port)
    const text = Array.from({ length: 2000 }, (_, i) => `chunk${i};`).join('')
    assert.equal((await roundTrip(s, text)).reply, text)
  })

  test('adds latency each way; setDelay(0) removes it', async (t) => {
    const proxy = await startTcpProxy({ target: { host: '127.0.0.1', port: await echoServer(t) }, delayMs: 150 })
    defer(t, () => proxy.close())
    const s = await client(t, proxy.port)
    const slow = await roundTrip(s, 'ping')
    assert.equal(slow.reply, 'ping')
    assert.ok(slow.ms >= 290, `round trip ${slow.ms} ms, expected >= 300 (150 each way)`)
    proxy.setDelay(0)
    const fast = await roundTrip(s, 'pong')
    assert.ok(fast.ms < slow.ms, `after setDelay(0): ${fast.ms} ms`)
  })

  test('a partition stalls open and new connections without a reset; heal delivers what waited', async (t) => {
    const proxy = await startTcpProxy({ target: { host: '127.0.0.1', port: await echoServer(t) } })
    defer(t, () => proxy.close())
    const s = await client(t, proxy.port)
    proxy.partition()
    await assert.rejects(roundTrip(s, 'lost?', 600), /no echo/)
    const late = await client(t, proxy.port)
    await assert.rejects(roundTrip(late, 'new', 400), /no echo/)
    let closed = false
    s.on('close', () => (closed = true))
    proxy.heal()
    assert.equal((await roundTrip(s, '!')).reply, 'lost?!')
    assert.equal((await roundTrip(late, '?')).reply, 'new?')
    assert.equal(closed, false)
  })

  test('reset destroys the open connections; close is idempotent', async (t) => {
    const proxy = await startTcpProxy({ target: { host: '127.0.0.1', port: await echoServer(t) } })
    const s = await client(t, proxy.port)
    await roundTrip(s, 'x')
    const closed = new Promise<void>((r) => s.once('close', () => r()))
    proxy.reset()
    await closed
    await proxy.close()
    await proxy.close()
    assert.throws(() => proxy.setDelay(-1), /delay must be >= 0/)
  })
})
