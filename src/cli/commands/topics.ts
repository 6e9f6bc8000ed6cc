/** `lifeline topics ensure`: create (or check) the DLQ and retry-tier topics of a consumer. */
import type { Command } from 'commander'
import { createAdmin } from '../../kafka/index.js'
import { ensureTopics } from '../../runtime/topics.js'
import { printJson, printTable } from '../output.js'
import { brokersOption } from './common.js'

export function registerTopics(program: Command): void {
  const topics = program.command('topics').description('provision the topics a Lifeline consumer needs')
  topics
    .command('ensure')
    .description('create each source topic\'s DLQ ({service}.{topic}.dlq) and retry tiers ({service}.{topic}.retry.N) with the source\'s partition count; refuse one with fewer partitions')
    .requiredOption('-s, --service <name>', 'the consumer\'s service name')
    .requiredOption('-t, --topic <topic...>', 'source topic(s)')
    .option('-b, --brokers <list>', 'bootstrap brokers (default: KAFKA_BOOTSTRAP)')
    .option('--dlq-topic <template>', 'DLQ name template', '{service}.{topic}.dlq')
    .option('--retention-days <days>', 'DLQ retention in days', '14')
    .option('--retry-delays <ms...>', 'one delay per retry tier, ms (e.g. 5000 60000 600000): creates that many tiers')
    .option('--retry-topic <template>', 'retry tier name template', '{service}.{topic}.retry.{n}')
    .option('--replication-factor <n>', 'replication factor of created topics (default: the broker default)')
    .option('--json', 'print JSON')
    .action(async (opts: { service: string; topic: string[]; brokers?: string; dlqTopic: string; retentionDays: string; replicationFactor?: string; json?: boolean; retryDelays?: string[]; retryTopic: string }) => {
      const days = Number(opts.retentionDays)
      if (!(days > 0)) throw new Error(`--retention-days must be a positive number, got ${opts.retentionDays}`)
      const replicationFactor = opts.replicationFactor === undefined ? undefined : Number(opts.replicationFactor)
      if (replicationFactor !== undefined && !(Number.isInteger(replicationFactor) && replicationFactor > 0)) {
        throw new Error(`--replication-factor must be a positive integer, got ${opts.replicationFactor}`)
      }
      const delaysMs = (opts.retryDelays ?? []).map((d) => {
        const n = Number(d)
        if (!(Number.isInteger(n) && n >= 0)) throw new Error(`--retry-delays takes integers >= 0 (ms), got ${d}`)
        return n
      })
      const admin = createAdmin({ brokers: brokersOption(opts.brokers) })
      try {
        const result = await ensureTopics(admin, {
          service: opts.service,
          topics: opts.topic,
          deadLetter: { topic: opts.dlqTopic, retentionMs: Math.round(days * 24 * 3600 * 1000), replicationFactor },
          ...(delaysMs.length > 0 ? { retryTopics: { delaysMs, topic: opts.retryTopic } } : {}),
        })
        if (opts.json) printJson(result)
        else printTable(result.map((r) => ({ topic: r.topic, role: r.tier === undefined ? r.role : `${r.role} ${r.tier}`, source: r.source, partitions: r.partitions, status: r.created ? 'created' : 'exists' })))
      } finally {
        await admin.close()
      }
    })
}
