/**
 * The package as a user installs it: `npm run build`, `npm pack`, then `npm install` of the tarball into a
 * new project (dependencies from the registry, the optional peers left out), and there: `import` from
 * `lifeline`, `lifeline/kafka` and `lifeline/dlq` (the last needs the optional peer hono: a clear error
 * without it, and working with it), and `npx lifeline --help`.
 *
 * The Kafka binding is not rebuilt from source in the new project (minutes): its install scripts are
 * skipped and the binary this checkout built is copied in — the same version, platform and patch.
 */
import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { cp, mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { test } from 'node:test'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'

const run = promisify(execFile)
const ROOT = fileURLToPath(new URL('../../', import.meta.url))

test('npm pack, installed into a new project: the entry points import, the optional peers stay optional, the bin runs compiled code', { timeout: 300_000 }, async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'lifeline-pack-'))
  t.after(() => rm(dir, { recursive: true, force: true }))
  await run('npm', ['run', 'build'], { cwd: ROOT })
  await run('npm', ['pack', '--pack-destination', dir], { cwd: ROOT })
  const tarball = (await readdir(dir)).find((f) => f.endsWith('.tgz'))!
  const app = join(dir, 'app')
  await mkdir(app)
  await writeFile(join(app, 'package.json'), JSON.stringify({ name: 'app', version: '1.0.0', type: 'module', private: true }))
  await run('npm', ['install', '--ignore-scripts', '--no-audit', '--no-fund', join(dir, tarball)], { cwd: app, timeout: 240_000 })
  const binding = join(app, 'node_modules/@confluentinc/kafka-javascript/build')
  await rm(binding, { recursive: true, force: true })
  await cp(join(ROOT, 'node_modules/@confluentinc/kafka-javascript/build'), binding, { recursive: true })

  const installed = await readdir(join(app, 'node_modules'))
  for (const optional of ['pg', 'hono', 'tsx']) assert.ok(!installed.includes(optional), `${optional} is an optional peer: not installed with lifeline`)
  assert.ok(!installed.includes('@electric-sql'), '@electric-sql/pglite is an optional peer')

  await writeFile(
    join(app, 'main.mjs'),
    `const core = await import('lifeline')
const kafka = await import('lifeline/kafka')
let dlq
try { await import('lifeline/dlq') } catch (err) { dlq = err.code + ' ' + err.message }
console.log(JSON.stringify({ createConsumer: typeof core.createConsumer, client: kafka.clientVersion(), dlq }))`,
  )
  const { stdout } = await run(process.execPath, ['main.mjs'], { cwd: app })
  const result = JSON.parse(stdout) as { createConsumer: string; client: string; dlq: string }
  assert.equal(result.createConsumer, 'function')
  assert.match(result.client, /^librdkafka 2\./)
  assert.match(result.dlq, /ERR_MODULE_NOT_FOUND .*hono/, 'lifeline/dlq names the missing optional peer')

  const help = await run('npx', ['--no-install', 'lifeline', '--help'], { cwd: app })
  assert.match(help.stdout, /Usage: lifeline/)
  assert.match(help.stdout, /dlq/)

  // With the peers installed, lifeline/dlq loads.
  await run('npm', ['install', '--ignore-scripts', '--no-audit', '--no-fund', 'hono@4', '@hono/node-server@2'], { cwd: app, timeout: 240_000 })
  const { stdout: withPeers } = await run(process.execPath, ['-e', "import('lifeline/dlq').then((m) => console.log(typeof m.createDlqProcessor))"], { cwd: app })
  assert.equal(withPeers.trim(), 'function')
})
