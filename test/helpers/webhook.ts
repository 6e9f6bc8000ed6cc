/** A real local HTTP server that records the webhook requests it gets, closed when the test ends. */
import { createServer, type IncomingMessage } from 'node:http'
import type { TestContext } from 'node:test'
import { defer } from './cleanup.js'

export interface ReceivedRequest {
  at: number
  path: string
  headers: IncomingMessage['headers']
  text: string
  /** The body parsed as JSON. */
  body: Record<string, unknown>
  /** The status this request was answered with. */
  status: number
}

export interface WebhookReceiver {
  url: string
  received: ReceivedRequest[]
  /** The statuses to answer the next requests with, in order (then 200). */
  failNext(...statuses: number[]): void
  /** Headers added to the next failing answer (e.g. `retry-after`). */
  failHeaders: Record<string, string>
  /** Hold every answer until released (a webhook that does not answer). */
  hang(on: boolean): void
}

export async function webhookReceiver(t: TestContext): Promise<WebhookReceiver> {
  const received: ReceivedRequest[] = []
  const statuses: number[] = []
  let hanging = false
  const held: Array<() => void> = []
  const receiver: WebhookReceiver = {
    url: '',
    received,
    failNext: (...s) => statuses.push(...s),
    failHeaders: {},
    hang(on) {
      hanging = on
      if (!on) for (const release of held.splice(0)) release()
    },
  }
  const server = createServer((req, res) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => {
      const answer = () => {
        const status = statuses.shift() ?? 200
        const text = Buffer.concat(chunks).toString('utf8')
        received.push({ at: Date.now(), path: req.url ?? '/', headers: req.headers, text, body: JSON.parse(text) as Record<string, unknown>, status })
        res.writeHead(status, status >= 300 ? receiver.failHeaders : {})
        res.end(status >= 300 ? 'no' : 'ok')
      }
      if (hanging) held.push(answer)
      else answer()
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  defer(t, () => {
    for (const release of held.splice(0)) release()
    server.closeAllConnections()
    return new Promise<void>((resolve) => server.close(() => resolve()))
  })
  receiver.url = `http://127.0.0.1:${(server.address() as { port: number }).port}`
  return receiver
}
