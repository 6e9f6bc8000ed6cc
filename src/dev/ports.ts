/** Free-port discovery on the loopback interface. */
import { createServer } from 'node:net'

/** True when `port` can be bound on 127.0.0.1 right now. */
export function portIsFree(port: number, host = '127.0.0.1'): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer()
    server.once('error', () => resolve(false))
    server.listen({ port, host, exclusive: true }, () => server.close(() => resolve(true)))
  })
}

/** `count` distinct free ports, chosen by the kernel, none of them in `exclude`. */
export async function freePorts(count: number, exclude: ReadonlySet<number> = new Set()): Promise<number[]> {
  const ports: number[] = []
  while (ports.length < count) {
    const port = await new Promise<number>((resolve, reject) => {
      const server = createServer()
      server.once('error', reject)
      server.listen({ port: 0, host: '127.0.0.1', exclusive: true }, () => {
        const address = server.address()
        const p = typeof address === 'object' && address !== null ? address.port : 0
        server.close(() => resolve(p))
      })
    })
    if (port > 0 && !exclude.has(port) && !ports.includes(port)) ports.push(port)
  }
  return ports
}

/** Resolves true once a TCP connection to host:port succeeds. */
export function canConnect(port: number, host = '127.0.0.1', timeoutMs = 1000): Promise<boolean> {
  return import('node:net').then(
    ({ connect }) =>
      new Promise<boolean>((resolve) => {
        const socket = connect({ port, host })
        const done = (ok: boolean) => {
          socket.destroy()
          resolve(ok)
        }
        socket.setTimeout(timeoutMs, () => done(false))
        socket.once('connect', () => done(true))
        socket.once('error', () => done(false))
      }),
  )
}
