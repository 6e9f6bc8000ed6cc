/**
 * A small TCP proxy for fault tests: it forwards connections to a target and can add latency (the kernel
 * here has no `netem` qdisc), stall every connection as a network partition does (no bytes either way,
 * no reset: the peers only notice through their own timeouts), and reset every connection.
 *
 * @module
 * @example
 * const proxy = await startTcpProxy({ target: { host: '127.0.0.1', port: 9092 } })
 * proxy.setDelay(200)   // +200 ms each way
 * proxy.partition()     // silence
 * proxy.heal()          // bytes flow again
 * await proxy.close()
 */
import { createServer, connect, type Server, type Socket } from 'node:net'
import { LifelineError } from '../errors.js'

export interface TcpProxyOptions {
  /** Where to listen (default 127.0.0.1, a free port). */
  listen?: { host?: string; port?: number }
  target: { host: string; port: number }
  /** Latency added to every chunk, each way, ms (default 0). */
  delayMs?: number
}

export interface TcpProxy {
  readonly host: string
  readonly port: number
  /** Open client connections. */
  readonly connections: number
  /** Sets the added latency for chunks from now on, ms (each way). */
  setDelay(ms: number): void
  /** Stalls every connection, open and new: nothing is forwarded until `heal()`. */
  partition(): void
  /** Ends a partition: held bytes and connections go on. */
  heal(): void
  /** Destroys every open connection (the peers see a reset). */
  reset(): void
  /** Stops listening and destroys every connection. Idempotent. */
  close(): Promise<void>
  [Symbol.asyncDispose](): Promise<void>
}

/** One direction of a connection: chunks wait until their due time (and while partitioned). */
class Pipe {
  readonly #queue: Array<{ due: number; data: Buffer }> = []
  #timer: NodeJS.Timeout | undefined
  constructor(
    readonly to: Socket,
    readonly state: { delayMs: number; partitioned: boolean },
  ) {}
  push(data: Buffer): void {
    if (this.#queue.length === 0 && this.state.delayMs === 0 && !this.state.partitioned) {
      this.to.write(data)
      return
    }
    this.#queue.push({ due: Date.now() + this.state.delayMs, data })
    this.schedule()
  }
  schedule(): void {
    if (this.#timer !== undefined || this.state.partitioned || this.#queue.length === 0) return
    const wait = Math.max(0, this.#queue[0]!.due - Date.now())
    this.#timer = setTimeout(() => {
      this.#timer = undefined
      this.flush()
    }, wait)
  }
  flush(): void {
    const now = Date.now()
    while (!this.state.partitioned && this.#queue.length > 0 && this.#queue[0]!.due <= now) this.to.write(this.#queue.shift()!.data)
    this.schedule()
  }
  stop(): void {
    if (this.#timer !== undefined) clearTimeout(this.#timer)
    this.#timer = undefined
  }
}

/** Starts a proxy; resolves once it listens. */
export async function startTcpProxy(options: TcpProxyOptions): Promise<TcpProxy> {
  const state = { delayMs: options.delayMs ?? 0, partitioned: false }
  const links = new Set<{ client: Socket; upstream: Socket | undefined; pipes: Pipe[]; open: () => void }>()
  const server: Server = createServer({ pauseOnConnect: true }, (client) => {
    const link = { client, upstream: undefined as Socket | undefined, pipes: [] as Pipe[], open: () => {} }
    links.add(link)
    const drop = () => {
      links.delete(link)
      for (const p of link.pipes) p.stop()
      client.destroy()
      link.upstream?.destroy()
    }
    client.on('error', drop)
    client.on('close', drop)
    link.open = () => {
      if (link.upstream !== undefined) return
      const upstream = connect({ host: options.target.host, port: options.target.port })
      link.upstream = upstream
      const up = new Pipe(upstream, state)
      const down = new Pipe(client, state)
      link.pipes = [up, down]
      client.on('data', (d: Buffer) => up.push(d))
      upstream.on('data', (d: Buffer) => down.push(d))
      upstream.on('error', drop)
      upstream.on('close', drop)
      client.resume()
    }
    // A connection made during a partition waits, unanswered, like a SYN into a black hole.
    if (!state.partitioned) link.open()
  })
  const host = options.listen?.host ?? '127.0.0.1'
  await new Promise<void>((resolve, reject) => {
    server.once('error', (err) => reject(new LifelineError('LL_FAULT', `TCP proxy cannot listen on ${host}:${options.listen?.port ?? 0}: ${err.message}`, { cause: err })))
    server.listen({ host, port: options.listen?.port ?? 0 }, resolve)
  })
  const port = (server.address() as { port: number }).port
  let closing: Promise<void> | undefined
  const proxy: TcpProxy = {
    host,
    port,
    get connections() {
      return links.size
    },
    setDelay(ms) {
      if (!(ms >= 0)) throw new LifelineError('LL_ARGUMENT_INVALID', `delay must be >= 0 ms, got ${ms}`)
      state.delayMs = ms
    },
    partition() {
      state.partitioned = true
      for (const link of links) {
        link.client.pause()
        link.upstream?.pause()
      }
    },
    heal() {
      state.partitioned = false
      for (const link of links) {
        if (link.upstream === undefined) link.open()
        else {
          link.client.resume()
          link.upstream.resume()
          for (const p of link.pipes) p.flush()
        }
      }
    },
    reset() {
      for (const link of links) {
        link.client.resetAndDestroy()
        link.upstream?.destroy()
      }
    },
    close() {
      closing ??= new Promise<void>((resolve) => {
        server.close(() => resolve())
        for (const link of links) {
          link.client.destroy()
          link.upstream?.destroy()
        }
      })
      return closing
    },
    [Symbol.asyncDispose]: () => proxy.close(),
  }
  return proxy
}
