/** A small seeded PRNG (mulberry32): the workload and the fault schedule are reproducible from one seed. */

/** A function returning floats in [0, 1), the same sequence for the same seed. */
export type Random = () => number

export function seededRandom(seed: number): Random {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

/** An integer in [min, max] (both included). */
export function randomInt(random: Random, min: number, max: number): number {
  return min + Math.floor(random() * (max - min + 1))
}

/** One element of a non-empty list. */
export function pick<T>(random: Random, items: readonly T[]): T {
  return items[Math.floor(random() * items.length)]!
}

/** A derived seed, so independent streams (workload, faults) do not shift when one draws more numbers. */
export function deriveSeed(seed: number, stream: string): number {
  let h = seed >>> 0
  for (const c of stream) h = Math.imul(h ^ c.charCodeAt(0), 0x01000193) >>> 0
  return h
}
