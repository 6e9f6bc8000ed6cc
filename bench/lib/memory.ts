/**
 * Peak memory of a benchmark run, shared by the runtime and scale benches.
 *
 * @module
 */

/** Samples heap used and RSS every 50 ms (and at start and stop); peak values on stop(). */
export function memorySampler(): { stop(): { heap: number; rss: number } } {
  let heap = 0
  let rss = 0
  const sample = () => {
    const m = process.memoryUsage()
    heap = Math.max(heap, m.heapUsed)
    rss = Math.max(rss, m.rss)
  }
  sample()
  const timer = setInterval(sample, 50)
  return {
    stop() {
      clearInterval(timer)
      sample()
      return { heap, rss }
    },
  }
}
