/** The command tree of the `lifeline` CLI (no side effects: main.ts runs it). */
import { Command } from 'commander'
import { registerDemo } from './commands/demo.js'
import { registerDevKafka } from './commands/dev-kafka.js'
import { registerDlq } from './commands/dlq.js'
import { registerEffects } from './commands/effects.js'
import { registerKeys } from './commands/keys.js'
import { registerReconcile } from './commands/reconcile.js'
import { registerRehearse } from './commands/rehearse.js'
import { registerTopics } from './commands/topics.js'

export function buildProgram(): Command {
  const program = new Command('lifeline')
    .description('Lifeline: reliable Kafka event consumption for TypeScript')
    .version('0.1.0')
    .showHelpAfterError()
  registerDevKafka(program)
  registerTopics(program)
  registerKeys(program)
  registerReconcile(program)
  registerEffects(program)
  registerDlq(program)
  registerRehearse(program)
  registerDemo(program)
  return program
}
