/**
 * `lifeline/observe`: the metrics and health endpoints of a consumer process (docs/metrics.md).
 *
 * @module
 */
export { serveMetrics, serveMetricsDefaults } from '../observe/serve-metrics.js'
export type { MetricsServer, ServeMetricsOptions } from '../observe/serve-metrics.js'
export { watchConsumerHealth, judgeHealth, healthDefaults } from '../observe/health.js'
export type { ConsumerHealth, ConsumerHealthOptions, HealthReport, HealthLimits } from '../observe/health.js'
