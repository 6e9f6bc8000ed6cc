/**
 * The consumer runtime's entry point; the implementation lives in ./consumer/ (one module per concern,
 * layered as context.ts describes).
 *
 * @module
 */
export { createConsumer, type ConsumerStats, type LifelineConsumer } from './consumer/index.js'
