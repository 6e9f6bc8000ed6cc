import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { test } from 'node:test'
import { promisify } from 'node:util'

const run = promisify(execFile)

test('npm test refuses to pass when it finds no test file', async (t) => {
  const empty = mkdtempSync(join(tmpdir(), 'lifeline-no-tests-'))
  t.after(() => rmSync(empty, { recursive: true, force: true }))
  const script = new URL('../../scripts/test.ts', import.meta.url).pathname
  await assert.rejects(run(process.execPath, ['--import', 'tsx', script, empty]), (err: { code: number; stderr: string }) => {
    assert.equal(err.code, 1)
    assert.match(err.stderr, /no test files/)
    return true
  })
})
