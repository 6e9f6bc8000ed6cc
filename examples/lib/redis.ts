/**
 * A small Redis client for the examples (the project has no Redis dependency): one TCP connection speaking
 * RESP2, commands pipelined in order, a timeout per command, and Lua scripts run by EVALSHA with a fallback
 * to EVAL when the server does not have the script cached yet (`NOSCRIPT`: after a restart or SCRIPT FLUSH).
 *
 * It is deliberately minimal: no cluster redirects, no pub/sub, no RESP3. A connection that fails or times
 * out is dropped with every command still waiting on it (their replies could no longer be matched to them);
 * the next command connects again.
 *
 * @module
 * @example
 * const redis = connectRedis(process.env.REDIS_URL ?? 'redis://127.0.0.1:6379')
 * await redis.command(['SET', 'greeting', 'hello'])
 * const take = defineScript("return redis.call('DECR', KEYS[1])")
 * const left = await take.run(redis, ['stock'], [])
 * await redis.close()
 */
import { createHash } from 'node:crypto'
import { connect, type Socket } from 'node:net'

/** A decoded reply: simple and bulk strings as text, integers as numbers, nil as null, arrays nested. */
export type RedisReply = string | number | null | RedisReply[]

/** An error reply from the server (`-ERR ...`, `-NOSCRIPT ...`, `-NOREPLICAS ...`); `code` is its first word. */
export class RedisReplyError extends Error {
  override readonly name = 'RedisReplyError'
  readonly code: string
  constructor(message: string) {
    super(message)
    this.code = /^[A-Z]+/.exec(message)?.[0] ?? 'ERR'
  }
}

/** The connection failed, closed or a reply did not come in time: the command may or may not have run. */
export class RedisConnectionError extends Error {
  override readonly name = 'RedisConnectionError'
  readonly code = 'REDIS_CONNECTION'
}

export interface RedisOptions {
  /** `redis://[:password@]host:port[/db]` (default `redis://127.0.0.1:6379`). */
  url?: string
  /** How long a command may wait for its reply, ms (default 2000). */
  commandTimeoutMs?: number
}

export interface RedisClient {
  /** Sends one command; resolves with its reply, rejects with {@link RedisReplyError} or {@link RedisConnectionError}. */
  command(args: ReadonlyArray<string | number>): Promise<RedisReply>
  /** Closes the connection; commands still waiting are rejected. Idempotent. */
  close(): Promise<void>
}

interface Pending {
  resolve(reply: RedisReply): void
  reject(error: Error): void
  timer: NodeJS.Timeout
}

const INCOMPLETE = Symbol('incomplete')
type Parsed = { value: RedisReply | RedisReplyError; end: number } | typeof INCOMPLETE

/** Parses one RESP2 value of `buf` starting at `at` (pure); INCOMPLETE when more bytes are needed. */
export function parseReply(buf: Buffer, at = 0): Parsed {
  const lineEnd = buf.indexOf('\r\n', at)
  if (lineEnd < 0) return INCOMPLETE
  const type = String.fromCharCode(buf[at]!)
  const line = buf.toString('utf8', at + 1, lineEnd)
  const next = lineEnd + 2
  switch (type) {
    case '+':
      return { value: line, end: next }
    case '-':
      return { value: new RedisReplyError(line), end: next }
    case ':':
      return { value: Number(line), end: next }
    case '$': {
      const length = Number(line)
      if (length < 0) return { value: null, end: next }
      if (buf.length < next + length + 2) return INCOMPLETE
      return { value: buf.toString('utf8', next, next + length), end: next + length + 2 }
    }
    case '*': {
      const count = Number(line)
      if (count < 0) return { value: null, end: next }
      const items: RedisReply[] = []
      let pos = next
      for (let i = 0; i < count; i++) {
        const item = parseReply(buf, pos)
        if (item === INCOMPLETE) return INCOMPLETE
        // An error inside an array (e.g. from EXEC) is kept as its message.
        items.push(item.value instanceof RedisReplyError ? item.value.message : item.value)
        pos = item.end
      }
      return { value: items, end: pos }
    }
    default:
      throw new RedisConnectionError(`unexpected RESP type byte ${JSON.stringify(type)}`)
  }
}

/** Encodes a command as a RESP array of bulk strings. */
export function encodeCommand(args: ReadonlyArray<string | number>): Buffer {
  const parts: Buffer[] = [Buffer.from(`*${args.length}\r\n`)]
  for (const arg of args) {
    const bytes = Buffer.from(String(arg), 'utf8')
    parts.push(Buffer.from(`$${bytes.length}\r\n`), bytes, Buffer.from('\r\n'))
  }
  return Buffer.concat(parts)
}

function parseUrl(url: string): { host: string; port: number; password?: string; db?: number } {
  const u = new URL(url)
  if (u.protocol !== 'redis:') throw new Error(`a Redis URL starts with redis://, got ${JSON.stringify(url)}`)
  const db = u.pathname.length > 1 ? Number(u.pathname.slice(1)) : undefined
  return {
    host: u.hostname || '127.0.0.1',
    port: u.port ? Number(u.port) : 6379,
    ...(u.password ? { password: decodeURIComponent(u.password) } : {}),
    ...(db === undefined || Number.isNaN(db) ? {} : { db }),
  }
}

/** Creates a client; it connects on the first command. */
export function connectRedis(options: RedisOptions | string = {}): RedisClient {
  const opts = typeof options === 'string' ? { url: options } : options
  const target = parseUrl(opts.url ?? 'redis://127.0.0.1:6379')
  const timeoutMs = opts.commandTimeoutMs ?? 2000
  let socket: Socket | undefined
  let ready: Promise<Socket> | undefined
  let buffer: Buffer = Buffer.alloc(0)
  let pending: Pending[] = []
  let closed = false

  function drop(error: Error): void {
    const waiting = pending
    pending = []
    buffer = Buffer.alloc(0)
    socket?.destroy()
    socket = undefined
    ready = undefined
    for (const p of waiting) {
      clearTimeout(p.timer)
      p.reject(error)
    }
  }

  function onData(chunk: Buffer): void {
    buffer = buffer.length === 0 ? chunk : Buffer.concat([buffer, chunk])
    let pos = 0
    for (;;) {
      let parsed: Parsed
      try {
        parsed = parseReply(buffer, pos)
      } catch (err) {
        drop(err as Error)
        return
      }
      if (parsed === INCOMPLETE) break
      pos = parsed.end
      const waiter = pending.shift()
      if (!waiter) {
        drop(new RedisConnectionError('a reply arrived for no command'))
        return
      }
      clearTimeout(waiter.timer)
      if (parsed.value instanceof RedisReplyError) waiter.reject(parsed.value)
      else waiter.resolve(parsed.value)
    }
    buffer = pos === buffer.length ? Buffer.alloc(0) : buffer.subarray(pos)
  }

  function send(s: Socket, args: ReadonlyArray<string | number>): Promise<RedisReply> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => drop(new RedisConnectionError(`redis ${target.host}:${target.port} did not answer ${String(args[0])} within ${timeoutMs} ms`)), timeoutMs)
      pending.push({ resolve, reject, timer })
      s.write(encodeCommand(args))
    })
  }

  function open(): Promise<Socket> {
    ready ??= new Promise<Socket>((resolve, reject) => {
      const s = connect({ host: target.host, port: target.port })
      s.setNoDelay(true)
      const refuse = (err: Error) => {
        s.destroy()
        ready = undefined
        reject(new RedisConnectionError(`cannot connect to redis ${target.host}:${target.port}: ${err.message}`))
      }
      s.once('error', refuse)
      s.once('connect', () => {
        s.off('error', refuse)
        s.on('error', (err) => drop(new RedisConnectionError(`redis connection failed: ${err.message}`)))
        s.on('close', () => {
          if (socket === s) drop(new RedisConnectionError('redis connection closed'))
        })
        s.on('data', onData)
        socket = s
        const setup: Array<Promise<RedisReply>> = []
        if (target.password !== undefined) setup.push(send(s, ['AUTH', target.password]))
        if (target.db !== undefined) setup.push(send(s, ['SELECT', target.db]))
        Promise.all(setup).then(
          () => resolve(s),
          (err: unknown) => {
            reject(err as Error)
            drop(err as Error)
          },
        )
      })
    })
    return ready
  }

  return {
    async command(args) {
      if (closed) throw new RedisConnectionError('the redis client is closed')
      return send(await open(), args)
    },
    async close() {
      if (closed) return
      closed = true
      const s = socket
      drop(new RedisConnectionError('the redis client is closed'))
      if (s && !s.destroyed) await new Promise((r) => s.once('close', r))
    },
  }
}

/** A Lua script run by its SHA1 (EVALSHA), loaded with EVAL the first time the server does not know it. */
export interface RedisScript {
  readonly sha: string
  run(client: RedisClient, keys: readonly string[], args: ReadonlyArray<string | number>): Promise<RedisReply>
}

export function defineScript(source: string): RedisScript {
  const sha = createHash('sha1').update(source).digest('hex')
  return {
    sha,
    async run(client, keys, args) {
      try {
        return await client.command(['EVALSHA', sha, keys.length, ...keys, ...args])
      } catch (err) {
        if (!(err instanceof RedisReplyError && err.code === 'NOSCRIPT')) throw err
        return client.command(['EVAL', source, keys.length, ...keys, ...args])
      }
    },
  }
}
