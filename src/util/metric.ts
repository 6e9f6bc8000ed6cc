/**
 * Prometheus metrics in a registry the user passes in: one getter that returns the metric already
 * registered under a name (several consumers, an inbox and a processor may share one registry) or makes it.
 *
 * @module
 */
import type { Registry } from 'prom-client'

/** The metric `name` of `registry`, made by `make` (which must register it there) when absent. */
export function metric<T>(registry: Registry, name: string, make: () => T): T {
  return (registry.getSingleMetric(name) as T | undefined) ?? make()
}
