/** `lifeline demo` (what `npm start` runs). */
import type { Command } from 'commander'

export function registerDemo(program: Command): void {
  program
    .command('demo')
    .description('start a local Kafka broker and the embedded database, then run the order-events demo')
    .option('-n, --orders <n>', 'orders to produce (3 events each: CREATED, PAID, SHIPPED)', '10')
    .option('--follow', 'keep producing an order per second until Ctrl-C')
    .option('--console', "after the operator's part, keep the DLQ processor and its console (/console) up until Ctrl-C, and print a token to sign in with")
    .action(async (opts: { orders: string; follow?: boolean; console?: boolean }) => {
      const orders = Number(opts.orders)
      if (!Number.isInteger(orders) || orders < 1) throw new Error(`--orders must be a positive integer, got ${opts.orders}`)
      const controller = new AbortController()
      const stop = () => controller.abort()
      process.once('SIGINT', stop)
      process.once('SIGTERM', stop)
      // Loaded here: the demo runs the DLQ processor (its HTTP API needs the optional peer hono).
      const { runDemo } = await import('../../demo/demo.js')
      await runDemo({ orders, follow: opts.follow ?? false, console: opts.console ?? false, signal: controller.signal, print: (line) => process.stdout.write(`${line}\n`) })
    })
}
