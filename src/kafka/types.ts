/**
 * Lifeline's own small Kafka interfaces. Everything outside `src/kafka/` talks to Kafka through these;
 * only this folder imports `@confluentinc/kafka-javascript`.
 *
 * @module
 */

/** One Kafka record header. Kafka headers are an ordered list and a key may repeat. */
export interface KafkaHeader {
  key: string
  value: Buffer | null
}

export interface TopicPartition {
  topic: string
  partition: number
}

export interface TopicPartitionOffset extends TopicPartition {
  /** For commits: the offset of the *next* record to read (last processed + 1), as Kafka defines it. */
  offset: number
  metadata?: string | null
}

/** A record as the consumer delivers it. Key and value are the exact bytes on the wire. */
export interface ConsumedRecord {
  topic: string
  partition: number
  offset: number
  key: Buffer | null
  value: Buffer | null
  headers: KafkaHeader[]
  /** Record timestamp, ms since epoch (CreateTime or LogAppendTime per the topic's config). */
  timestamp: number
  /** Key + value bytes, for backpressure accounting. */
  size: number
}

export interface ProduceRecord {
  topic: string
  /** Explicit partition; omitted → the client's partitioner (murmur2 of the key, as the Java client). */
  partition?: number
  key?: Buffer | string | null
  value: Buffer | string | null
  headers?: KafkaHeader[]
  timestamp?: number
}

export interface ProduceAck {
  topic: string
  partition: number
  offset: number
}

/** Connection settings shared by producer, consumer and admin. */
export interface KafkaConnection {
  /** Bootstrap brokers, `host:port`. */
  brokers: string[]
  /** client.id sent to the broker (default `lifeline`). */
  clientId?: string
  /**
   * Extra librdkafka properties (security.protocol, sasl.*, ssl.*, compression, ...), passed through
   * unchanged. See the librdkafka CONFIGURATION.md for names.
   */
  config?: Record<string, string | number | boolean>
}

export interface ProducerOptions extends KafkaConnection {
  /** Idempotent producer with acks=all (default true): no duplicates or reordering from producer retries. */
  idempotent?: boolean
  /** Time to wait for an acknowledgement before failing a send, ms (default 30000). */
  deliveryTimeoutMs?: number
  /** linger.ms (default 5). */
  lingerMs?: number
}

export interface KafkaProducer {
  connect(): Promise<void>
  /** Sends records; resolves with one ack per record, in order, once every record is acknowledged. */
  send(records: readonly ProduceRecord[]): Promise<ProduceAck[]>
  flush(timeoutMs?: number): Promise<void>
  /** The partition's high watermark (the offset the next record will get), asked of its leader. */
  highWatermark(topic: string, partition: number, timeoutMs?: number): Promise<number>
  /** Flushes, then disconnects. Idempotent. */
  close(): Promise<void>
}

export interface RebalanceHandlers {
  /**
   * Called before partitions are given to this member. It may return start offsets for some of them (e.g.
   * offsets stored with the effects in a database): those partitions start there instead of at the
   * group's committed offset.
   */
  onAssign?(partitions: TopicPartition[]): Promise<void | TopicPartitionOffset[]> | void | TopicPartitionOffset[]
  /**
   * Called before partitions are taken away; the revocation completes only when the returned promise
   * settles, so in-flight work can finish and commit first. `lost` is true when the partitions were
   * already lost (session expiry): commits would fail then.
   */
  onRevoke?(partitions: TopicPartition[], lost: boolean): Promise<void> | void
  /** A hook threw; the (un)assignment was applied regardless. */
  onError?(error: unknown): void
}

export interface ConsumerOptions extends KafkaConnection {
  groupId: string
  /** Where to start without a committed offset (default `earliest`). */
  fromBeginning?: boolean
  /** session.timeout.ms (default 10000). */
  sessionTimeoutMs?: number
  /** max.poll.interval.ms (default 300000). */
  maxPollIntervalMs?: number
  /** `read_committed` (default) or `read_uncommitted`. */
  isolationLevel?: 'read_committed' | 'read_uncommitted'
  rebalance?: RebalanceHandlers
}

export interface KafkaConsumer {
  connect(): Promise<void>
  subscribe(topics: readonly string[]): void
  /**
   * Fetches up to `max` records, waiting up to `timeoutMs` for the first one. Never blocks the event loop.
   * Returns [] on timeout.
   */
  poll(max: number, timeoutMs: number): Promise<ConsumedRecord[]>
  /** Commits exactly these offsets (next offset to read) and resolves when the broker acknowledged them. */
  commit(offsets: readonly TopicPartitionOffset[]): Promise<void>
  /** Committed offsets of the group for these partitions (-1001 = none yet, as librdkafka reports). */
  committed(partitions: readonly TopicPartition[], timeoutMs?: number): Promise<TopicPartitionOffset[]>
  pause(partitions: readonly TopicPartition[]): void
  resume(partitions: readonly TopicPartition[]): void
  seek(position: TopicPartitionOffset, timeoutMs?: number): Promise<void>
  assignment(): TopicPartition[]
  /** Cached low/high watermarks of an assigned partition (updated by fetches), or undefined. */
  watermarks(topic: string, partition: number): { low: number; high: number } | undefined
  /** Leaves the group and disconnects. Idempotent. */
  close(): Promise<void>
}

export interface TopicSpec {
  topic: string
  partitions: number
  replicationFactor?: number
  /** Topic-level configs, e.g. `{ 'cleanup.policy': 'delete', 'retention.ms': '1209600000' }`. */
  configs?: Record<string, string>
}

export interface TopicDescription {
  topic: string
  partitions: Array<{ partition: number; leader: number; replicas: number[]; isr: number[] }>
}

export interface KafkaAdmin {
  connect(): Promise<void>
  /** Creates the topics that do not exist yet; returns the names it created. */
  createTopics(specs: readonly TopicSpec[], options?: { timeoutMs?: number }): Promise<string[]>
  deleteTopics(topics: readonly string[]): Promise<void>
  listTopics(): Promise<string[]>
  describeTopics(topics: readonly string[]): Promise<TopicDescription[]>
  /** Low and high watermarks per partition. */
  topicOffsets(topic: string): Promise<Array<{ partition: number; low: number; high: number }>>
  /** The group's committed offsets per partition of `topic` (-1 when none). */
  groupOffsets(groupId: string, topic: string): Promise<Array<{ partition: number; offset: number }>>
  close(): Promise<void>
}

export interface TransactionalProducerOptions extends KafkaConnection {
  /**
   * transactional.id. Keep it stable for one producing instance across its restarts and unique among
   * the instances alive at once: a producer that initialises with an id fences every older producer with
   * that id (a zombie) and aborts the transaction it left open (KIP-98).
   */
  transactionalId: string
  /** transaction.timeout.ms: the broker aborts a transaction left open longer than this, ms (default 60000). */
  transactionTimeoutMs?: number
  /** Timeout of each init, sendOffsets, commit and abort call, ms (default 30000). */
  operationTimeoutMs?: number
  /** linger.ms (default 5). */
  lingerMs?: number
}

/**
 * A transactional producer: records sent between `begin()` and `commit()`, and the consumer offsets
 * given to `sendOffsets()`, become visible together or not at all (to `read_committed` readers).
 * Fenced → every call rejects with `LL_FENCED`; any other failure → `LL_TRANSACTION` with the cause.
 */
export interface TransactionalProducer {
  /** Connects and initialises transactions (once): fences older producers with the same id. */
  connect(): Promise<void>
  /** Starts a transaction (connects first if needed). One transaction at a time. */
  begin(): Promise<void>
  /** Sends records in the open transaction; resolves with one ack per record, in order. */
  send(records: readonly ProduceRecord[]): Promise<ProduceAck[]>
  /** Adds consumer offsets (next offset to read) to the open transaction; they commit with it. */
  sendOffsets(offsets: readonly TopicPartitionOffset[], consumer: KafkaConsumer): Promise<void>
  /** Commits the open transaction (flushing its records first). */
  commit(): Promise<void>
  /** Aborts the open transaction: its records stay invisible to read_committed readers. */
  abort(): Promise<void>
  /** True from begin() until commit() or abort() succeeded. */
  inTransaction(): boolean
  /** Aborts an open transaction (best effort), then disconnects. Idempotent. */
  close(): Promise<void>
}
