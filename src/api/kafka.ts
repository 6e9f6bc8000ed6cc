/**
 * `lifeline/kafka`: Lifeline's own Kafka clients over librdkafka (a producer that resolves each record with
 * its partition and offset, a caller-polled group consumer, an admin client, a transactional producer).
 *
 * @module
 */
export { createProducer, createAdmin, createConsumer as createKafkaConsumer, createTransactionalProducer, transactionalProducerDefaults, clientVersion } from '../kafka/index.js'
export type {
  ConsumedRecord,
  ConsumerOptions as KafkaConsumerOptions,
  KafkaAdmin,
  KafkaConnection,
  KafkaConsumer,
  KafkaHeader,
  KafkaProducer,
  ProduceAck,
  ProduceRecord,
  ProducerOptions,
  TopicPartition,
  TopicPartitionOffset,
  TopicSpec,
  TransactionalProducer,
  TransactionalProducerOptions,
} from '../kafka/index.js'
