/**
 * Kafka access for the rest of Lifeline. This folder is the only one that imports the Kafka client.
 *
 * @module
 */
export { createAdmin } from './admin.js'
export { createConsumer } from './consumer.js'
export { createProducer } from './producer.js'
export { createTransactionalProducer, transactionalProducerDefaults } from './transactional.js'
export { clientVersion } from './native.js'
export type * from './types.js'
