/**
 * A producer that records what it is asked to send instead of sending it (offsets: its position in `sent`):
 * for tests of the DLQ API and CLI that check what a redrive would send, not the broker's part in it.
 */
import type { KafkaProducer, ProduceAck, ProduceRecord } from '../../src/kafka/types.js'

export function recordingProducer(sent: ProduceRecord[]): KafkaProducer {
  return {
    connect: async () => undefined,
    send: async (records) => records.map((r): ProduceAck => {
      sent.push(r)
      return { topic: r.topic, partition: r.partition ?? 0, offset: sent.length - 1 }
    }),
    flush: async () => undefined,
    highWatermark: async () => sent.length,
    close: async () => undefined,
  }
}
