/**
 * Serving the DLQ API (with the console and metrics routes the processor adds to it) over node's HTTP
 * server until `close()`.
 *
 * @module
 */
import { serve } from '@hono/node-server'

export interface ServedApi {
  /** `http://host:port` (the port the system chose for port 0). */
  url: string
  port: number
  close(): Promise<void>
}

/** Serves `app` on `host:port` (port 0: any free port) until `close()`. */
export async function serveDlqApi(app: { fetch: (req: Request, env?: unknown) => Response | Promise<Response> }, options: { port: number; host?: string }): Promise<ServedApi> {
  const host = options.host ?? '127.0.0.1'
  return new Promise((resolve, reject) => {
    const server = serve({ fetch: app.fetch, port: options.port, hostname: host }, (info) => {
      const shown = info.family === 'IPv6' ? `[${info.address}]` : info.address
      let closing: Promise<void> | undefined
      resolve({
        url: `http://${shown}:${info.port}`,
        port: info.port,
        close: () =>
          (closing ??= new Promise<void>((res, rej) => {
            server.close((err) => (err ? rej(err) : res()))
            ;(server as { closeAllConnections?: () => void }).closeAllConnections?.()
          })),
      })
    })
    server.once('error', reject)
  })
}
