/**
 * Kafka's rule for topic names (and the names Lifeline builds topic names from: services, transactional
 * ids' prefixes): 1 to 249 of letters, digits, `.`, `_` and `-`. One definition for the option schemas, the
 * DLQ API's filters and a replay's target.
 *
 * @module
 */
import Type from 'typebox'

/** The characters a Kafka topic name may hold, as a JSON-schema pattern. */
export const NAME_PATTERN = '^[A-Za-z0-9._-]+$'
/** The longest topic name Kafka accepts. */
export const MAX_TOPIC_LENGTH = 249
/** A whole topic name: 1 to 249 allowed characters. */
export const TOPIC_NAME = /^[A-Za-z0-9._-]{1,249}$/

/** The schema of a name made of topic-name characters (at most 249 of them unless `maxLength` says less). */
export const NameSchema = (options: { description?: string; maxLength?: number } = {}) =>
  Type.String({ minLength: 1, maxLength: options.maxLength ?? MAX_TOPIC_LENGTH, pattern: NAME_PATTERN, ...(options.description ? { description: options.description } : {}) })
