/**
 * `lifeline dlq serve`'s notification flags → the processor's `notifications` option (docs/cli.md):
 * `--notifications <file>` (a JSON file: the whole option, the way to keep webhook URLs — secrets — off the
 * command line), `--webhook <url>` / `--slack-webhook <url>` (repeatable, added to the file's webhooks),
 * `--dead-letter-rate <n>`, `--dead-letter-rate-window <seconds>`, `--dedup-window <seconds>`, `--public-url <url>`.
 */
import { readFileSync } from 'node:fs'
import type { Command } from 'commander'
import type { DlqNotificationOptions } from '../../dlq/processor.js'
import type { WebhookTarget } from '../../dlq/notifier.js'

export interface NotificationFlags {
  notifications?: string
  webhook?: string[]
  slackWebhook?: string[]
  deadLetterRate?: string
  deadLetterRateWindow?: string
  dedupWindow?: string
  publicUrl?: string
}

const repeat = (value: string, previous: string[] | undefined): string[] => [...(previous ?? []), value]

export function withNotificationFlags(cmd: Command): Command {
  return cmd
    .option('--notifications <file>', 'JSON file: the notifications option ({ "webhooks": [{ "url", "format": "json"|"slack", "kinds"?, "headers"? }], "deadLetterRate"?, ... }; docs/dlq.md#notifications)')
    .option('--webhook <url>', 'POST the generic JSON notification to this URL (repeatable)', repeat)
    .option('--slack-webhook <url>', 'POST a Slack-compatible notification to this incoming-webhook URL (repeatable)', repeat)
    .option('--dead-letter-rate <n>', 'notify when more than n dead letters are indexed within the window')
    .option('--dead-letter-rate-window <seconds>', 'the dead-letter rate window (default 300)')
    .option('--dedup-window <seconds>', 'the same notification is sent once within this window (default 3600)')
    .option('--public-url <url>', 'the URL operators reach the API at (notifications link to it)')
}

function seconds(flag: string, value: string | undefined): number | undefined {
  if (value === undefined) return undefined
  if (!/^\d{1,7}$/.test(value) || Number(value) < 1) throw new Error(`${flag} must be a whole number of seconds from 1 to 9999999, got ${value}`)
  return Number(value) * 1000
}

/** The processor's `notifications` option from the flags; undefined when none was given. */
export function notificationOptions(flags: NotificationFlags): DlqNotificationOptions | undefined {
  let base: Partial<DlqNotificationOptions> = {}
  if (flags.notifications !== undefined) {
    let text: string
    try {
      text = readFileSync(flags.notifications, 'utf8')
    } catch (err) {
      throw new Error(`--notifications: cannot read ${flags.notifications}: ${(err as Error).message}`, { cause: err })
    }
    try {
      base = JSON.parse(text) as Partial<DlqNotificationOptions>
    } catch (err) {
      throw new Error(`--notifications: ${flags.notifications} is not JSON: ${(err as Error).message}`, { cause: err })
    }
    if (base === null || typeof base !== 'object' || Array.isArray(base)) throw new Error(`--notifications: ${flags.notifications} must hold a JSON object`)
  }
  const webhooks: WebhookTarget[] = [...(base.webhooks ?? []), ...(flags.webhook ?? []).map((url) => ({ url, format: 'json' as const })), ...(flags.slackWebhook ?? []).map((url) => ({ url, format: 'slack' as const }))]
  const anyFlag = flags.deadLetterRate !== undefined || flags.deadLetterRateWindow !== undefined || flags.dedupWindow !== undefined || flags.publicUrl !== undefined
  if (webhooks.length === 0) {
    if (flags.notifications !== undefined || anyFlag) throw new Error('notifications need a webhook: --webhook <url>, --slack-webhook <url> or webhooks in the --notifications file')
    return undefined
  }
  const out: DlqNotificationOptions = { ...base, webhooks }
  if (flags.deadLetterRate !== undefined) {
    if (!/^\d{1,9}$/.test(flags.deadLetterRate)) throw new Error(`--dead-letter-rate must be an integer >= 0, got ${flags.deadLetterRate}`)
    out.deadLetterRate = { ...(base.deadLetterRate ?? {}), threshold: Number(flags.deadLetterRate) }
  }
  const windowMs = seconds('--dead-letter-rate-window', flags.deadLetterRateWindow)
  if (windowMs !== undefined) {
    if (out.deadLetterRate === undefined) throw new Error('--dead-letter-rate-window needs --dead-letter-rate (or deadLetterRate in the --notifications file)')
    out.deadLetterRate = { ...out.deadLetterRate, windowMs }
  }
  const dedup = seconds('--dedup-window', flags.dedupWindow)
  if (dedup !== undefined) out.dedupWindowMs = dedup
  if (flags.publicUrl !== undefined) out.publicUrl = flags.publicUrl
  return out
}
