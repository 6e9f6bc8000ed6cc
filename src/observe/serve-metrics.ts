/**
 * A small HTTP server a consumer process starts for Prometheus and its orchestrator:
 *
 * | path | answers |
 * | --- | --- |
 * | `GET /metrics` | the registry in Prometheus text format |
 * | `GET /healthz` | 200 while the poll loop is alive, else 503 (a liveness probe: restart the process) |
 * | `GET /readyz` | 200 when live, assigned and not stalled, else 503 with the reasons (a readiness probe) |
 *
 * Both probes answer JSON (`{ status, reasons, pollAgeMs, ... }`, see {@link HealthReport}); `HEAD` works
 * too. `close()` stops listening and watching; it never closes the consumer (the caller owns it).
 * Documented in docs/metrics.md#health-endpoints.
 *
 * @module
 * @example
 * const registry = new Registry()
 * const consumer = createConsumer({ groupId: 'billing', metrics: { registry }, ... })
 * const server = await serveMetrics({ consumer, group: 'billing', registry, port: 9464, host: '0.0.0.0' })
 * await consumer.start()
 * // on shutdown: await consumer.close(); await server.close()
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import type { Registry } from 'prom-client'
import { LifelineError } from '../errors.js'
import { silentLogger, type Logger } from '../logger.js'
import { watchConsumerHealth, type ConsumerHealth, type ConsumerHealthOptions, type HealthReport } from './health.js'

export interface ServeMetricsOptions extends ConsumerHealthOptions {
  /** The registry `/metrics` serves: the one passed to the consumer's `metrics` option. */
  registry: Registry
  /** Port (default 9464; 0: any free port). */
  port?: number
  /** Host (default 127.0.0.1; `0.0.0.0` for probes from outside the host, e.g. Kubernetes). */
  host?: string
  logger?: Logger
}

export const serveMetricsDefaults = { port: 9464, host: '127.0.0.1' } as const

export interface MetricsServer {
  /** `http://host:port` */
  readonly url: string
  readonly port: number
  readonly health: ConsumerHealth
  /** Stops listening (open connections are closed) and watching. Idempotent: a second call returns the same promise. */
  close(): Promise<void>
  [Symbol.asyncDispose](): Promise<void>
}

function send(res: ServerResponse, status: number, type: string, body: string, head: boolean): void {
  res.writeHead(status, { 'content-type': type, 'cache-control': 'no-store' })
  res.end(head ? undefined : body)
}

function probe(res: ServerResponse, ok: boolean, report: HealthReport, head: boolean): void {
  send(res, ok ? 200 : 503, 'application/json; charset=utf-8', JSON.stringify({ status: ok ? 'ok' : 'failing', ...report }), head)
}

/** Starts the server; resolves once it listens (LL_LISTEN when it cannot, e.g. the port is taken). */
export async function serveMetrics(options: ServeMetricsOptions): Promise<MetricsServer> {
  const registry = options.registry
  if (typeof registry?.metrics !== 'function') throw new LifelineError('LL_OPTIONS_INVALID', 'invalid options: serveMetrics.registry: must be a prom-client Registry')
  const port = options.port ?? serveMetricsDefaults.port
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new LifelineError('LL_OPTIONS_INVALID', `invalid options: serveMetrics.port: must be an integer 0..65535, got ${String(port)}`)
  const host = options.host ?? serveMetricsDefaults.host
  const log = (options.logger ?? silentLogger()).child({ component: 'metrics-server', group: options.group })
  const health = watchConsumerHealth(options)

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const path = (req.url ?? '/').split('?')[0]
    const head = req.method === 'HEAD'
    if (req.method !== 'GET' && !head) {
      res.setHeader('allow', 'GET, HEAD')
      return send(res, 405, 'text/plain; charset=utf-8', 'method not allowed\n', false)
    }
    if (path === '/metrics') return send(res, 200, registry.contentType, await registry.metrics(), head)
    if (path === '/healthz') {
      const report = health.check()
      return probe(res, report.live, report, head)
    }
    if (path === '/readyz') {
      const report = health.check()
      return probe(res, report.ready, report, head)
    }
    send(res, 404, 'text/plain; charset=utf-8', 'not found: /metrics, /healthz, /readyz\n', head)
  }
  const server = createServer((req, res) => {
    handle(req, res).catch((err: unknown) => {
      log.error({ err, path: req.url }, 'metrics request failed')
      if (!res.headersSent) send(res, 500, 'text/plain; charset=utf-8', 'internal error\n', false)
      else res.destroy()
    })
  })
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject)
      server.listen(port, host, () => {
        server.off('error', reject)
        resolve()
      })
    })
  } catch (err) {
    await health.close()
    throw new LifelineError('LL_LISTEN', `the metrics server cannot listen on ${host}:${port}: ${(err as Error).message}`, { cause: err, details: { host, port } })
  }
  server.on('error', (err) => log.error({ err }, 'metrics server error'))
  const address = server.address()
  const bound = typeof address === 'object' && address !== null ? address.port : port
  const shown = host.includes(':') ? `[${host}]` : host
  log.info({ url: `http://${shown}:${bound}` }, 'metrics server listening')

  let closing: Promise<void> | undefined
  const served: MetricsServer = {
    url: `http://${shown}:${bound}`,
    port: bound,
    health,
    close() {
      closing ??= (async () => {
        const errors: unknown[] = []
        await new Promise<void>((resolve) => {
          server.close((err) => {
            if (err) errors.push(err)
            resolve()
          })
          server.closeAllConnections()
        })
        await health.close().catch((err: unknown) => errors.push(err))
        if (errors.length > 0) throw new LifelineError('LL_CONSUMER_CLOSE', `closing the metrics server failed in ${errors.length} step(s)`, { cause: errors[0], details: { errors: errors.map(String) } })
      })()
      return closing
    },
    [Symbol.asyncDispose]() {
      return served.close()
    },
  }
  return served
}
