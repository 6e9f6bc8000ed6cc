/** `lifeline dev kafka start|stop|status`: the local broker for development. */
import type { Command } from 'commander'
import { defaultStateDir, kafkaStatus, startKafka, stopKafka } from '../../dev/kafka-launcher.js'
import { createLogger } from '../../logger.js'
import { printJson, printTable } from '../output.js'

export function registerDevKafka(program: Command): void {
  const dev = program.command('dev').description('local development services')
  const kafka = dev.command('kafka').description('a real Apache Kafka 4.3 broker (or cluster of 3) on this machine')

  kafka
    .command('start')
    .description('resolve the broker jars (once), format storage and start; runs in the background until `stop`')
    .option('-b, --brokers <n>', 'number of brokers: 1 or 3', '1')
    .option('-d, --dir <path>', 'state directory (data, configs, logs)', defaultStateDir())
    .option('-p, --port <ports>', 'fixed broker port(s), comma-separated (default: free ports)')
    .option('--keep-data', 'keep the data of an earlier start in this directory')
    .option('--json', 'print the cluster state as JSON')
    .action(async (opts: { brokers: string; dir: string; port?: string; keepData?: boolean; json?: boolean }) => {
      const brokers = Number(opts.brokers)
      if (brokers !== 1 && brokers !== 3) throw new Error(`--brokers must be 1 or 3, got ${opts.brokers}`)
      const ports = opts.port?.split(',').map((p) => {
        const n = Number(p)
        if (!Number.isInteger(n) || n <= 0 || n > 65535) throw new Error(`--port: not a port number: ${p}`)
        return n
      })
      const cluster = await startKafka({
        brokers,
        stateDir: opts.dir,
        ports,
        fresh: !opts.keepData,
        tieToParent: false,
        logger: createLogger({ name: 'lifeline-dev' }),
      })
      if (opts.json) printJson({ ...cluster.state, startupMs: cluster.startupMs })
      else {
        process.stdout.write(`Kafka ${cluster.version} is running (${brokers} broker${brokers > 1 ? 's' : ''}, ready in ${cluster.startupMs} ms)\n`)
        process.stdout.write(`bootstrap: ${cluster.bootstrap}\n`)
        process.stdout.write(`export KAFKA_BOOTSTRAP=${cluster.bootstrap}\n`)
        process.stdout.write(`logs: ${opts.dir}/node-*/server.log — stop with: lifeline dev kafka stop --dir ${opts.dir}\n`)
      }
    })

  kafka
    .command('stop')
    .description('stop the brokers recorded in the state directory')
    .option('-d, --dir <path>', 'state directory', defaultStateDir())
    .action(async (opts: { dir: string }) => {
      const state = await stopKafka(opts.dir)
      process.stdout.write(`stopped ${state.nodes.length} broker(s) (${state.bootstrap})\n`)
    })

  kafka
    .command('status')
    .description('show the recorded brokers and whether each one runs and accepts connections')
    .option('-d, --dir <path>', 'state directory', defaultStateDir())
    .option('--json', 'print JSON')
    .action(async (opts: { dir: string; json?: boolean }) => {
      const status = await kafkaStatus(opts.dir)
      if (!status) {
        if (opts.json) printJson({ running: false, nodes: [] })
        else process.stdout.write(`no local Kafka recorded in ${opts.dir}\n`)
        process.exitCode = 3
        return
      }
      const up = status.nodes.every((n) => n.running && n.reachable)
      if (opts.json) printJson({ running: up, bootstrap: status.state.bootstrap, version: status.state.version, nodes: status.nodes })
      else {
        process.stdout.write(`Kafka ${status.state.version} at ${status.state.bootstrap}: ${up ? 'up' : 'DEGRADED'}\n`)
        printTable(status.nodes.map((n) => ({ id: n.id, pid: n.pid, port: n.port, running: n.running, reachable: n.reachable })))
      }
      if (!up) process.exitCode = 3
    })
}
