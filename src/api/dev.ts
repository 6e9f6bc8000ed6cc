/**
 * `lifeline/dev`: real infrastructure for development and fault tests — a local Kafka broker or 3-broker
 * cluster (Maven Central jars), a private PostgreSQL instance, a delaying/partitioning TCP proxy and Linux
 * network namespaces.
 *
 * @module
 */
export { LauncherError, LauncherErrorCodes, isLauncherError } from '../dev/errors.js'
export type { LauncherErrorCode } from '../dev/errors.js'
export { startKafka, stopKafka, kafkaStatus } from '../dev/kafka-launcher.js'
export type { KafkaCluster, StartKafkaOptions, ClusterState } from '../dev/kafka-launcher.js'
export { resolveKafkaJars, KAFKA_VERSION } from '../dev/kafka-jars.js'
export { startPostgres, postgresLauncherDefaults } from '../dev/postgres-launcher.js'
export type { PostgresInstance, StartPostgresOptions, PostgresStopMode } from '../dev/postgres-launcher.js'
export { startTcpProxy } from '../dev/tcp-proxy.js'
export type { TcpProxy, TcpProxyOptions } from '../dev/tcp-proxy.js'
export { createNetns, netnsSupport } from '../dev/netns.js'
export type { Netns, NetnsOptions } from '../dev/netns.js'
