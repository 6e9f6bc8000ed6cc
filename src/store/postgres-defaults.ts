/** Defaults of PostgresOptions (apart from postgres.ts, so reading them does not load the `pg` driver). */
export const postgresDefaults = { poolSize: 10, connectTimeoutMs: 10_000, statementTimeoutMs: 60_000 } as const
