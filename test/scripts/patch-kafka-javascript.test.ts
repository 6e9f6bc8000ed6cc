/**
 * scripts/patch-kafka-javascript.sh on a copy of the binding's sources (--source-only): applies the
 * null-header patch once, is idempotent, and refuses a package whose version or patched files differ.
 * That the patched binding keeps null headers apart is tested on the broker (test/kafka/headers.test.ts).
 */
import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { test, type TestContext } from 'node:test'
import { promisify } from 'node:util'

const run = promisify(execFile)
const script = new URL('../../scripts/patch-kafka-javascript.sh', import.meta.url).pathname
const patchFile = new URL('../../patches/kafka-javascript-null-headers.patch', import.meta.url).pathname
const installed = dirname(createRequire(import.meta.url).resolve('@confluentinc/kafka-javascript/package.json'))
const FILES = ['src/producer.cc', 'src/common.cc', 'src/binding.cc']

/** A directory holding the binding's package.json and the patched files as upstream 1.10.1 ships them. */
async function pristineCopy(t: TestContext, version = '1.10.1'): Promise<string> {
  const dir = mkdtempSync(join(tmpdir(), 'lifeline-ckjs-'))
  t.after(() => rmSync(dir, { recursive: true, force: true }))
  mkdirSync(join(dir, 'src'))
  for (const f of FILES) cpSync(join(installed, f), join(dir, f))
  writeFileSync(join(dir, 'package.json'), JSON.stringify({ name: '@confluentinc/kafka-javascript', version }))
  // The installed copy is patched (scripts/setup.sh): take the patch back out of the copy.
  await run('patch', ['-d', dir, '-p1', '-F0', '-R', '--silent', '--no-backup-if-mismatch', '-i', patchFile])
  return dir
}

const read = (dir: string) => FILES.map((f) => readFileSync(join(dir, f), 'utf8'))

test('applies the patch to pristine 1.10.1 sources, giving exactly the installed (patched) files; a second run changes nothing', async (t) => {
  const dir = await pristineCopy(t)
  assert.ok(!read(dir).join('').includes('lifelineNullHeaders'), 'the copy is pristine')
  const first = await run('bash', [script, '--source-only', dir])
  assert.match(first.stdout, /applied the null-header patch/)
  assert.deepEqual(read(dir), FILES.map((f) => readFileSync(join(installed, f), 'utf8')))
  const second = await run('bash', [script, '--source-only', dir])
  assert.match(second.stdout, /already applied/)
  assert.deepEqual(read(dir), FILES.map((f) => readFileSync(join(installed, f), 'utf8')))
})

test('refuses, loudly and without touching a file, sources that changed upstream in a patched place', async (t) => {
  const dir = await pristineCopy(t)
  const common = join(dir, 'src/common.cc')
  writeFileSync(common, readFileSync(common, 'utf8').replace('Nan::Encode(it->value_string(),', 'Nan::Encode(it->value_string() ,'))
  const before = read(dir)
  await assert.rejects(run('bash', [script, '--source-only', dir]), (err: { code: number; stderr: string }) => {
    assert.equal(err.code, 1)
    assert.match(err.stderr, /differ from what .* expects/)
    return true
  })
  assert.deepEqual(read(dir), before)
})

test('refuses another version of the binding', async (t) => {
  const dir = await pristineCopy(t, '1.11.0')
  await assert.rejects(run('bash', [script, '--source-only', dir]), (err: { code: number; stderr: string }) => {
    assert.equal(err.code, 1)
    assert.match(err.stderr, /is 1\.11\.0, the patch was written for 1\.10\.1/)
    return true
  })
  assert.ok(!read(dir).join('').includes('lifelineNullHeaders'))
})
