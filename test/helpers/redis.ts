/** A real Redis server started by a test on its own port, and a minimal RESP client for it. */
import { spawn, type ChildProcess } from 'node:child_process'
import { connect } from 'node:net'
import type { TestContext } from 'node:test'
import { freePorts } from '../../src/dev/ports.js'
import { defer } from './cleanup.js'
import { waitFor } from './kafka.js'

/** Sends one command and returns the reply line (e.g. `:3`, `+PONG`); rejects on refusal or after `timeoutMs`. */
export function redisCommand(port: number, args: string[], timeoutMs = 300): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect({ port, host: '127.0.0.1' })
    let reply = ''
    const fail = (err: Error) => {
      socket.destroy()
      reject(err)
    }
    socket.setTimeout(timeoutMs, () => fail(new Error(`redis on port ${port} did not answer within ${timeoutMs} ms`)))
    socket.once('error', fail)
    socket.on('data', (d: Buffer) => {
      reply += d.toString()
      if (reply.endsWith('\r\n')) {
        socket.destroy()
        if (reply.startsWith('-')) reject(new Error(reply.trim()))
        else resolve(reply.trim())
      }
    })
    socket.write(`*${args.length}\r\n${args.map((a) => `$${Buffer.byteLength(a)}\r\n${a}\r\n`).join('')}`)
  })
}

export interface RedisServer {
  port: number
  stop(): Promise<void>
  start(): Promise<void>
}

/** Starts `redis-server` (from PATH) on a free port, nothing persisted; stopped when the test ends. */
export async function startRedis(t: TestContext): Promise<RedisServer> {
  const [port] = await freePorts(1)
  let child: ChildProcess | undefined
  const server: RedisServer = {
    port: port!,
    async start() {
      child = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: 'ignore' })
      await waitFor(async () => (await redisCommand(port!, ['PING']).catch(() => '')) === '+PONG', 'redis to answer PING', 10_000)
    },
    async stop() {
      const c = child
      child = undefined
      if (!c || c.exitCode !== null) return
      const exited = new Promise((r) => c.once('exit', r))
      c.kill('SIGKILL')
      await exited
    },
  }
  await server.start()
  defer(t, () => server.stop())
  return server
}
