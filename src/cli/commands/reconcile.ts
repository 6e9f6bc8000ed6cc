/**
 * `lifeline reconcile list|run|runs|findings`: run reconciliations defined in code and read their records
 * (see src/effects/reconcile.ts, docs/reconciliation.md).
 *
 * Definitions come from a module: `--module <file>`, else the first of `lifeline.config.{ts,mts,js,mjs}` in
 * the working directory. Every exported definition counts (a named export, an array of them, the default
 * export), and so does every definition the module registers with registerReconciliation().
 */
import { existsSync } from 'node:fs'
import { resolve } from 'node:path'
import { pathToFileURL } from 'node:url'
import type { Command } from 'commander'
import {
  getReconciliation,
  getReconciliationRun,
  isReconciliation,
  listReconciliationFindings,
  listReconciliationRuns,
  listReconciliations,
  runReconciliation,
  type AnyReconciliation,
  type ReconcileFinding,
  type ReconcileKind,
  type ReconcileRun,
} from '../../effects/reconcile.js'
import { LifelineError } from '../../errors.js'
import { createLogger } from '../../logger.js'
import { openDatabase, type OpenDatabaseOptions, type SqlExecutor } from '../../store/index.js'
import { printJson, printTable } from '../output.js'
import { databaseOption, formatAge, limitOption } from './keys.js'

const DATABASE_HELP = 'postgres:// URL of a server, or a PGlite data directory (default: DATABASE_URL, else LIFELINE_DATA_DIR, else .lifeline/db)'
const MODULE_HELP = 'module exporting the definitions (default: lifeline.config.ts, .mts, .js or .mjs in the working directory)'
/** Looked for, in this order, in the working directory when no --module is given. */
export const CONFIG_FILES = ['lifeline.config.ts', 'lifeline.config.mts', 'lifeline.config.js', 'lifeline.config.mjs'] as const
/** Findings `run` prints under its summary. */
const SHOWN_FINDINGS = 20
const PREVIEW_CHARS = 60

/** Imports a module; a TypeScript file outside a tsx-run checkout is loaded through tsx (a dependency of Lifeline). */
async function importModule(file: string): Promise<Record<string, unknown>> {
  const url = pathToFileURL(file).href
  try {
    return (await import(url)) as Record<string, unknown>
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ERR_UNKNOWN_FILE_EXTENSION') throw err
    // tsx loads a TypeScript module: a development dependency in a checkout, an optional one once installed.
    const tsx = await import('tsx/esm/api').catch((missing: unknown) => {
      throw new LifelineError('LL_RECONCILE', `${file} is TypeScript: loading it needs tsx (npm install tsx), or compile it to JavaScript first`, { cause: missing })
    })
    tsx.register()
    // A new URL: the failed attempt stays cached under the first one.
    return (await import(`${url}?lifeline-tsx`)) as Record<string, unknown>
  }
}

/** The definitions of `--module` (or the config file in `cwd`), by name; LL_RECONCILE when there is no module or it cannot load. */
export async function loadDefinitions(modulePath: string | undefined, cwd = process.cwd()): Promise<{ file: string; definitions: AnyReconciliation[] }> {
  const file = modulePath === undefined ? CONFIG_FILES.map((f) => resolve(cwd, f)).find((f) => existsSync(f)) : resolve(cwd, modulePath)
  if (file === undefined) {
    throw new LifelineError('LL_RECONCILE', `no reconciliation definitions: pass --module <file> or add ${CONFIG_FILES[0]} (or .mts, .js, .mjs) to ${cwd}`)
  }
  if (!existsSync(file)) throw new LifelineError('LL_RECONCILE', `reconciliation module ${file} does not exist`, { details: { file } })
  let exported: Record<string, unknown>
  try {
    exported = await importModule(file)
  } catch (err) {
    throw new LifelineError('LL_RECONCILE', `cannot load reconciliation module ${file}: ${err instanceof Error ? err.message : String(err)}`, { cause: err, details: { file } })
  }
  const byName = new Map<string, AnyReconciliation>()
  const add = (def: AnyReconciliation) => {
    const known = byName.get(def.name)
    if (known !== undefined && known !== def) throw new LifelineError('LL_RECONCILE', `${file} defines two different reconciliations named ${def.name}`, { details: { file, name: def.name } })
    byName.set(def.name, def)
  }
  for (const value of Object.values(exported)) {
    for (const item of Array.isArray(value) ? value : [value]) if (isReconciliation(item)) add(item)
  }
  for (const def of listReconciliations()) add(def)
  return { file, definitions: [...byName.values()].sort((a, b) => a.name.localeCompare(b.name)) }
}

/** Calls each definition's close() once (definitions may share one); a failure is reported, not thrown. */
async function closeDefinitions(definitions: readonly AnyReconciliation[]): Promise<void> {
  const closes = new Set(definitions.flatMap((d) => (d.close === undefined ? [] : [d.close])))
  for (const close of closes) {
    await Promise.resolve()
      .then(close)
      .catch((err: unknown) => process.stderr.write(`lifeline: closing a reconciliation's source or target failed: ${err instanceof Error ? err.message : String(err)}\n`))
  }
}

async function withDatabase<T>(database: Pick<OpenDatabaseOptions, 'url' | 'dataDir'>, fn: (db: SqlExecutor) => Promise<T>): Promise<T> {
  const db = await openDatabase(database)
  try {
    return await fn(db)
  } finally {
    await db.close()
  }
}

/** `--batch-size`: an integer from 1 to 10000, or the definition's. */
function batchSizeOption(value: string | undefined): number | undefined {
  if (value === undefined) return undefined
  const n = Number(value)
  if (!/^\s*\d+\s*$/.test(value) || n < 1 || n > 10_000) throw new Error(`--batch-size must be an integer from 1 to 10000, got ${value}`)
  return n
}

function kindOption(value: string | undefined): ReconcileKind | undefined {
  if (value === undefined || value === 'missing' || value === 'extra' || value === 'different') return value
  throw new Error(`--kind must be missing, extra or different, got ${value}`)
}

function runIdArgument(value: string): string {
  if (!/^[1-9]\d{0,17}$/.test(value)) throw new Error(`the run id must be a positive integer (as \`lifeline reconcile runs\` prints it), got ${value}`)
  return value
}

const iso = (d: Date | null): string | null => (d === null ? null : d.toISOString())
const runJson = (r: ReconcileRun & { resumed?: boolean }) => ({ ...r, startedAt: iso(r.startedAt), heartbeatAt: iso(r.heartbeatAt), finishedAt: iso(r.finishedAt) })
const findingJson = (f: ReconcileFinding) => ({ ...f, foundAt: iso(f.foundAt), repairedAt: iso(f.repairedAt) })

/** JSON on one line, cut to `max` characters. */
function preview(value: unknown, max = PREVIEW_CHARS): string {
  if (value === null || value === undefined) return ''
  const text = typeof value === 'string' ? value : JSON.stringify(value)
  return text.length > max ? `${text.slice(0, max - 1)}…` : text
}

const duration = (r: ReconcileRun): string => formatAge((r.finishedAt ?? r.heartbeatAt).getTime() - r.startedAt.getTime())
const mode = (r: ReconcileRun): string => (r.repair ? 'repair' : 'dry run')

function findingRows(findings: readonly ReconcileFinding[]) {
  return findings.map((f) => ({
    kind: f.kind,
    key: f.key,
    repaired: f.repaired ? 'yes' : f.repairError === null ? 'no' : 'FAILED',
    source: preview(f.source),
    target: preview(f.target),
    'diff / repair error': f.repairError ?? preview(f.diff),
  }))
}

interface ListOptions { module?: string; json?: boolean }
interface RunOptions { module?: string; repair?: boolean; resume?: boolean; batchSize?: string; database?: string; json?: boolean; failOnDrift?: boolean }
interface RunsOptions { name?: string; limit?: string; database?: string; json?: boolean }
interface FindingsOptions { kind?: string; limit?: string; database?: string; json?: boolean }

export function registerReconcile(program: Command): void {
  const reconcile = program.command('reconcile').description('compare a source of truth with a target derived from it, report and repair the drift')

  reconcile
    .command('list')
    .description('list the reconciliations a module defines')
    .option('-m, --module <file>', MODULE_HELP)
    .option('--json', 'print JSON')
    .action(async (opts: ListOptions) => {
      const { file, definitions } = await loadDefinitions(opts.module)
      try {
        const rows = definitions.map((d) => ({
          name: d.name,
          'batch size': d.batchSize,
          'extra pass': d.extraPass ? 'yes' : 'no',
          repairs: (['missing', 'extra', 'different'] as const).filter((k) => d.repair?.[k] !== undefined).join(',') || '-',
          description: d.description ?? '',
        }))
        if (opts.json) printJson({ module: file, reconciliations: rows.map((r) => ({ name: r.name, batchSize: r['batch size'], extraPass: r['extra pass'] === 'yes', repairs: r.repairs === '-' ? [] : r.repairs.split(','), description: r.description })) })
        else printTable(rows)
      } finally {
        await closeDefinitions(definitions)
      }
    })

  reconcile
    .command('run')
    .description('run a reconciliation (a dry run unless --repair) and print what it found')
    .argument('<name>', 'the reconciliation (`lifeline reconcile list` names them)')
    .option('-m, --module <file>', MODULE_HELP)
    .option('--repair', 'repair what is found (default: a dry run that changes nothing)')
    .option('--resume', "continue the name's latest run if it did not complete (else start a new one)")
    .option('--batch-size <n>', "rows per batch, 1 to 10000 (default: the definition's)")
    .option('--fail-on-drift', 'exit with code 2 when drift remains unrepaired')
    .option('--database <url>', DATABASE_HELP)
    .option('--json', 'print the run as JSON')
    .action(async (name: string, opts: RunOptions) => {
      const batchSize = batchSizeOption(opts.batchSize)
      const database = databaseOption(opts.database)
      const { definitions } = await loadDefinitions(opts.module)
      const controller = new AbortController()
      const abort = () => controller.abort()
      process.once('SIGINT', abort)
      process.once('SIGTERM', abort)
      try {
        const def = getReconciliation(name, definitions)
        await withDatabase(database, async (db) => {
          const run = await runReconciliation(def, {
            db,
            signal: controller.signal,
            logger: createLogger({ level: process.env.LIFELINE_LOG_LEVEL ?? 'warn' }),
            ...(opts.repair ? { repair: true } : {}),
            ...(opts.resume ? { resume: true } : {}),
            ...(batchSize === undefined ? {} : { batchSize }),
          })
          const found = run.missing + run.extra + run.different
          if (opts.failOnDrift && found > run.repaired) process.exitCode = 2
          if (opts.json) {
            printJson(runJson(run))
            return
          }
          process.stdout.write(
            `run ${run.id} of ${run.name}: ${run.status} (${mode(run)}${run.resumed ? `, resumed, attempt ${run.attempts}` : ''}) in ${duration(run)}, ${run.batches} batch${run.batches === 1 ? '' : 'es'}\n` +
              `checked ${run.checked}: missing ${run.missing}, extra ${run.extra}, different ${run.different}; repaired ${run.repaired}, repair failed ${run.repairFailed}\n`,
          )
          if (found === 0) return
          const findings = await listReconciliationFindings(db, run.id, { limit: SHOWN_FINDINGS })
          process.stdout.write('\n')
          printTable(findingRows(findings))
          if (found > findings.length) process.stdout.write(`(first ${findings.length} of ${found}; \`lifeline reconcile findings ${run.id}\` lists them all)\n`)
          if (!run.repair) process.stdout.write('dry run: nothing was changed; run again with --repair to repair\n')
        })
      } finally {
        process.off('SIGINT', abort)
        process.off('SIGTERM', abort)
        await closeDefinitions(definitions)
      }
    })

  reconcile
    .command('runs')
    .description('list recorded runs, newest first')
    .option('--name <name>', 'only runs of this reconciliation')
    .option('-n, --limit <n>', 'most runs to list, 1 to 10000', '100')
    .option('--database <url>', DATABASE_HELP)
    .option('--json', 'print JSON')
    .action(async (opts: RunsOptions) => {
      const limit = limitOption(opts.limit)
      const runs = await withDatabase(databaseOption(opts.database), (db) => listReconciliationRuns(db, { limit, ...(opts.name === undefined ? {} : { name: opts.name }) }))
      if (opts.json) {
        printJson(runs.map(runJson))
        return
      }
      printTable(
        runs.map((r) => ({
          id: r.id,
          name: r.name,
          status: r.status,
          mode: mode(r),
          checked: r.checked,
          missing: r.missing,
          extra: r.extra,
          different: r.different,
          repaired: r.repaired,
          'repair failed': r.repairFailed,
          'started at': r.startedAt.toISOString(),
          took: duration(r),
          next: r.status === 'completed' ? '' : `${r.phase}${r.cursor === null ? '' : ` @ ${preview(r.cursor, 24)}`}`,
          error: r.error === null ? '' : preview(`${r.errorCode ?? ''}: ${r.error}`, 80),
        })),
      )
    })

  reconcile
    .command('findings')
    .description("list a run's findings in the order found")
    .argument('<run-id>', 'the run (`lifeline reconcile runs` lists them)')
    .option('--kind <kind>', 'only missing, extra or different')
    .option('-n, --limit <n>', 'most findings to list, 1 to 10000', '100')
    .option('--database <url>', DATABASE_HELP)
    .option('--json', 'print JSON')
    .action(async (id: string, opts: FindingsOptions) => {
      const runId = runIdArgument(id)
      const kind = kindOption(opts.kind)
      const limit = limitOption(opts.limit)
      const { run, findings } = await withDatabase(databaseOption(opts.database), async (db) => ({
        run: await getReconciliationRun(db, runId),
        findings: await listReconciliationFindings(db, runId, { limit, ...(kind === undefined ? {} : { kind }) }),
      }))
      if (opts.json) {
        printJson({ run: runJson(run), findings: findings.map(findingJson) })
        return
      }
      process.stdout.write(`run ${run.id} of ${run.name}: ${run.status} (${mode(run)}), missing ${run.missing}, extra ${run.extra}, different ${run.different}, repaired ${run.repaired}, repair failed ${run.repairFailed}\n\n`)
      printTable(findingRows(findings))
    })
}
