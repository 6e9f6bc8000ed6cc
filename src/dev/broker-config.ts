/** Pure builders for the broker's server.properties and log4j2 config (no I/O). */

export interface NodeSpec {
  id: number
  port: number
  controllerPort: number
  logDir: string
}

/**
 * server.properties for one combined broker+controller node of a cluster of `nodes`.
 * One node: a dynamic quorum formatted with `--standalone`. Three: a static voter set.
 */
export function serverProperties(node: NodeSpec, nodes: readonly NodeSpec[]): string {
  const replicas = nodes.length >= 3 ? 3 : 1
  const minIsr = nodes.length >= 3 ? 2 : 1
  const quorum =
    nodes.length === 1
      ? `controller.quorum.bootstrap.servers=127.0.0.1:${node.controllerPort}`
      : `controller.quorum.voters=${nodes.map((n) => `${n.id}@127.0.0.1:${n.controllerPort}`).join(',')}`
  return [
    'process.roles=broker,controller',
    `node.id=${node.id}`,
    `listeners=PLAINTEXT://127.0.0.1:${node.port},CONTROLLER://127.0.0.1:${node.controllerPort}`,
    `advertised.listeners=PLAINTEXT://127.0.0.1:${node.port},CONTROLLER://127.0.0.1:${node.controllerPort}`,
    'controller.listener.names=CONTROLLER',
    'listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT',
    'inter.broker.listener.name=PLAINTEXT',
    quorum,
    `log.dirs=${node.logDir}`,
    `default.replication.factor=${replicas}`,
    `min.insync.replicas=${minIsr}`,
    `offsets.topic.replication.factor=${replicas}`,
    // Few partitions: the first consumer group is ready in well under a second.
    'offsets.topic.num.partitions=3',
    `transaction.state.log.replication.factor=${replicas}`,
    `transaction.state.log.min.isr=${minIsr}`,
    'transaction.state.log.num.partitions=3',
    `share.coordinator.state.topic.replication.factor=${replicas}`,
    `share.coordinator.state.topic.min.isr=${minIsr}`,
    'group.initial.rebalance.delay.ms=0',
    'auto.create.topics.enable=false',
    // Must stay > 1 MiB per cleaner thread; the default 128 MiB is wasted on a dev broker.
    'log.cleaner.dedupe.buffer.size=8388608',
    'num.partitions=1',
    '',
  ].join('\n')
}

/** log4j2 properties: INFO to stdout (the launcher sends it to the node's server.log). */
export function log4jProperties(): string {
  return [
    'status = warn',
    'appender.out.type = Console',
    'appender.out.name = OUT',
    'appender.out.layout.type = PatternLayout',
    'appender.out.layout.pattern = [%d] %p %m (%c)%n',
    'rootLogger.level = INFO',
    'rootLogger.appenderRef.out.ref = OUT',
    // The request logger and state-change logger are noisy at INFO and say nothing a developer needs.
    'logger.request.name = kafka.request.logger',
    'logger.request.level = WARN',
    'logger.state.name = state.change.logger',
    'logger.state.level = WARN',
    '',
  ].join('\n')
}
