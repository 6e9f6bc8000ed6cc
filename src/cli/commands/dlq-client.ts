/**
 * The client of the DLQ processor's HTTP API the `lifeline dlq` commands use: where (`--url`, plain http
 * only to this machine unless `--insecure`: the token travels in a header) and with which token
 * (`LIFELINE_TOKEN`, `--token-file` / `LIFELINE_TOKEN_FILE`, or `--token`, warned about). See docs/cli.md.
 */
import { readFileSync, statSync } from 'node:fs'

export const DEFAULT_DLQ_URL = 'http://127.0.0.1:7480'

export interface ClientOptions { url?: string; token?: string; tokenFile?: string; insecure?: boolean; json?: boolean }

/** Thrown for a non-2xx answer: the API's error code and message. */
export class DlqApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(`${message} (HTTP ${status} ${code})`)
    this.name = 'DlqApiError'
  }
}

export interface DlqClient {
  request<T = unknown>(method: string, path: string, body?: unknown): Promise<{ status: number; body: T }>
}

/** Whether `hostname` (as URL gives it) is this machine's loopback: localhost, 127.0.0.0/8, ::1. */
export function isLoopback(hostname: string): boolean {
  return hostname === 'localhost' || hostname === '[::1]' || /^127(?:\.\d{1,3}){3}$/.test(hostname)
}

function readTokenFile(option: string, path: string, warn: (text: string) => void): string {
  let text: string
  try {
    text = readFileSync(path, 'utf8')
    if ((statSync(path).mode & 0o077) !== 0) warn(`warning: ${path} is readable by other users: chmod 600 it\n`)
  } catch (err) {
    throw new Error(`${option}: cannot read ${path}: ${(err as Error).message}`)
  }
  return text.trim()
}

/**
 * The API token: `--token` (warned about: it lands in the shell history and the process list), else
 * `--token-file`, else LIFELINE_TOKEN, else the file LIFELINE_TOKEN_FILE names.
 */
function resolveToken(opts: ClientOptions, env: NodeJS.ProcessEnv, warn: (text: string) => void): string | undefined {
  if (opts.token !== undefined) {
    warn('warning: --token puts the token in your shell history and the process list: use LIFELINE_TOKEN or --token-file <path> (LIFELINE_TOKEN_FILE)\n')
    return opts.token
  }
  if (opts.tokenFile !== undefined) return readTokenFile('--token-file', opts.tokenFile, warn)
  if (env.LIFELINE_TOKEN !== undefined && env.LIFELINE_TOKEN !== '') return env.LIFELINE_TOKEN
  if (env.LIFELINE_TOKEN_FILE !== undefined && env.LIFELINE_TOKEN_FILE !== '') return readTokenFile('LIFELINE_TOKEN_FILE', env.LIFELINE_TOKEN_FILE, warn)
  return undefined
}

/**
 * A client of the DLQ API at `url` with the token (checked now: a clear message when missing). Refuses
 * plain http to anything but this machine unless `insecure`: the token travels in a header.
 */
export function dlqClient(opts: ClientOptions, env: NodeJS.ProcessEnv = process.env, warn: (text: string) => void = (text) => void process.stderr.write(text)): DlqClient {
  const base = (opts.url ?? env.LIFELINE_DLQ_URL ?? DEFAULT_DLQ_URL).replace(/\/+$/, '')
  if (!/^https?:\/\/[^/\s]+$/.test(base)) throw new Error(`--url must be http(s)://host:port, got ${base}`)
  const url = new URL(base)
  if (url.protocol === 'http:' && !isLoopback(url.hostname) && opts.insecure !== true) {
    throw new Error(`refusing to send the token over plain http to a host that is not this machine (${url.host}): use https:// (a TLS proxy in front of the processor), or --insecure`)
  }
  const token = resolveToken(opts, env, warn)
  if (token === undefined || token === '') throw new Error('no API token: set LIFELINE_TOKEN, or pass --token-file <path> (lifeline dlq token create <name> --role <role> --owner <owner> makes one)')
  return {
    async request<T>(method: string, path: string, body?: unknown) {
      let res: Response
      try {
        res = await fetch(`${base}${path}`, {
          method,
          headers: { authorization: `Bearer ${token}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
          ...(body === undefined ? {} : { body: JSON.stringify(body) }),
        })
      } catch (err) {
        throw new Error(`cannot reach the DLQ API at ${base}: ${(err as Error).cause instanceof Error ? ((err as Error).cause as Error).message : (err as Error).message} (is lifeline dlq serve running? --url)`)
      }
      const text = await res.text()
      let parsed: unknown = undefined
      try {
        parsed = text === '' ? undefined : JSON.parse(text)
      } catch {
        parsed = text
      }
      if (!res.ok) {
        const e = (parsed as { error?: { code?: string; message?: string } } | undefined)?.error
        throw new DlqApiError(res.status, e?.code ?? 'LL_INTERNAL', e?.message ?? `${method} ${path} answered ${res.status}`)
      }
      return { status: res.status, body: parsed as T }
    },
  }
}
