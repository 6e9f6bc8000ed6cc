/** Shared bits of the examples' run scripts: the broker from the environment, topics, waiting. */
import { createAdmin } from '../../src/kafka/index.js'
import type { KafkaAdmin } from '../../src/kafka/types.js'

/** Brokers from KAFKA_BOOTSTRAP; exits with a hint when it is not set. */
export function brokersFromEnv(): string[] {
  const bootstrap = process.env.KAFKA_BOOTSTRAP
  if (!bootstrap) {
    console.error('KAFKA_BOOTSTRAP is not set. Start a local broker with `npm run lifeline -- dev kafka start` (it prints the address) or point it at yours, e.g. KAFKA_BOOTSTRAP=127.0.0.1:9092.')
    process.exit(2)
  }
  return bootstrap.split(',')
}

/** Creates the topic when it does not exist yet. */
export async function ensureTopic(brokers: string[], topic: string, partitions: number): Promise<void> {
  const admin: KafkaAdmin = createAdmin({ brokers })
  try {
    if (!(await admin.listTopics()).includes(topic)) await admin.createTopics([{ topic, partitions }])
  } finally {
    await admin.close()
  }
}

/** Polls `check` every 100 ms until it returns true; throws after `timeoutMs`. */
export async function waitUntil(check: () => boolean | Promise<boolean>, what: string, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 100))
  }
}

/** A small seeded PRNG (mulberry32): the run scripts and tests print their seed so a run can be repeated. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

/** Fisher–Yates shuffle with the given random source (returns a new array). */
export function shuffled<T>(items: readonly T[], random: () => number): T[] {
  const out = [...items]
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1))
    ;[out[i], out[j]] = [out[j]!, out[i]!]
  }
  return out
}
