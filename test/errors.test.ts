import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { test } from 'node:test'
import { ErrorCodes, LifelineError, isLifelineError } from '../src/errors.js'
import { LauncherErrorCodes } from '../src/dev/errors.js'
import { BEGIN, END, LAUNCHER_BEGIN, LAUNCHER_END, codeTable, launcherCodeTable } from '../scripts/docs-errors.js'

const codes = Object.keys(ErrorCodes)

test('every code carries the LL_ prefix and is unique', () => {
  for (const code of codes) assert.match(code, /^LL_[A-Z0-9_]+$/)
  assert.equal(new Set(codes).size, codes.length)
  const summaries = Object.values(ErrorCodes).map((e) => e.summary)
  assert.equal(new Set(summaries).size, summaries.length, 'two codes share a summary: one of them is redundant')
})

test('docs/errors.md documents exactly the catalogue', () => {
  const doc = readFileSync(new URL('../docs/errors.md', import.meta.url), 'utf8')
  const section = doc.slice(doc.indexOf(BEGIN) + BEGIN.length, doc.indexOf(END)).trim()
  assert.equal(section, codeTable(), 'docs/errors.md is stale: run `node --import tsx scripts/docs-errors.ts`')
  const documented = [...section.matchAll(/\| `(LL_[A-Z0-9_]+)` \|/g)].map((m) => m[1])
  assert.deepEqual(documented, codes)
  const launchers = doc.slice(doc.indexOf(LAUNCHER_BEGIN) + LAUNCHER_BEGIN.length, doc.indexOf(LAUNCHER_END)).trim()
  assert.equal(launchers, launcherCodeTable(), 'docs/errors.md is stale: run `node --import tsx scripts/docs-errors.ts`')
  assert.deepEqual([...launchers.matchAll(/\| `(LL_[A-Z0-9_]+)` \|/g)].map((m) => m[1]), Object.keys(LauncherErrorCodes))
  for (const code of Object.keys(LauncherErrorCodes)) assert.ok(!(code in ErrorCodes), `${code} is in one table only`)
})

test('LifelineError carries code, retriable default, cause and details', () => {
  const cause = new Error('boom')
  const err = new LifelineError('LL_KAFKA_PRODUCE', 'send failed', { cause, details: { topic: 't' } })
  assert.equal(err.code, 'LL_KAFKA_PRODUCE')
  assert.equal(err.retriable, true)
  assert.equal(err.cause, cause)
  assert.deepEqual(err.details, { topic: 't' })
  assert.ok(err instanceof Error)
  assert.equal(new LifelineError('LL_KAFKA_PRODUCE', 'fatal', { retriable: false }).retriable, false)
  assert.ok(isLifelineError(err, 'LL_KAFKA_PRODUCE'))
  assert.ok(!isLifelineError(err, 'LL_DB_QUERY'))
  assert.ok(!isLifelineError(new Error('x')))
})
