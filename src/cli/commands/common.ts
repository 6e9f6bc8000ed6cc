/** Options shared by CLI commands. */

/** `--brokers a:1,b:2`, else KAFKA_BOOTSTRAP, else a clear error. */
export function brokersOption(value: string | undefined): string[] {
  const list = (value ?? process.env.KAFKA_BOOTSTRAP ?? '').split(',').map((s) => s.trim()).filter(Boolean)
  if (list.length === 0) throw new Error('no brokers: pass --brokers host:port or set KAFKA_BOOTSTRAP (lifeline dev kafka start prints it)')
  return list
}
