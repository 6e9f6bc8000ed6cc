import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { isLifelineError } from '../../src/errors.js'
import { databaseOptionsFromEnv, describeVersion, isPostgresUrl, openDatabase } from '../../src/store/open.js'
import { defer, pgliteDataDir } from '../helpers/db.js'

describe('databaseOptionsFromEnv', () => {
  it('prefers DATABASE_URL, then LIFELINE_DATA_DIR, else the default', () => {
    const url = 'postgres://app@db:5432/lifeline'
    assert.deepEqual(databaseOptionsFromEnv({ DATABASE_URL: url, LIFELINE_DATA_DIR: '/data' }), { url })
    assert.deepEqual(databaseOptionsFromEnv({ DATABASE_URL: '', LIFELINE_DATA_DIR: '/data' }), { dataDir: '/data' })
    assert.deepEqual(databaseOptionsFromEnv({ LIFELINE_DATA_DIR: '' }), {})
    assert.deepEqual(databaseOptionsFromEnv({}), {})
  })
})

describe('isPostgresUrl', () => {
  it('accepts postgres:// and postgresql:// only', () => {
    assert.equal(isPostgresUrl('postgres://u@h/db'), true)
    assert.equal(isPostgresUrl('postgresql://u@h/db'), true)
    assert.equal(isPostgresUrl('mysql://u@h/db'), false)
    assert.equal(isPostgresUrl('/var/lib/lifeline'), false)
  })
})

describe('describeVersion', () => {
  it('labels a server and PGlite from their version() text', () => {
    assert.equal(
      describeVersion('postgres', 'PostgreSQL 15.19 (Debian 15.19-0+deb12u1) on x86_64-pc-linux-gnu, compiled by gcc, 64-bit'),
      'PostgreSQL 15.19 (server)',
    )
    assert.equal(
      describeVersion('pglite', 'PostgreSQL 18.6 (PGlite 0.5.16) on wasm32-unknown-emscripten, compiled by emcc, 32-bit'),
      'PGlite 0.5.16 (PostgreSQL 18.6, embedded)',
    )
  })
})

describe('openDatabase', () => {
  it('refuses a url that is not PostgreSQL instead of falling back to PGlite', async () => {
    await assert.rejects(openDatabase({ url: 'mysql://u@h/db' }), (err) => isLifelineError(err, 'LL_OPTIONS_INVALID'))
  })

  it('opens PGlite in the given data directory when no url is given', async (t) => {
    const dataDir = await pgliteDataDir(t)
    const db = await openDatabase({ dataDir, url: '' })
    defer(t, () => db.close())
    assert.equal(db.kind, 'pglite')
  })

  it('opens PostgreSQL for a postgres:// url', { skip: !process.env.DATABASE_URL && 'needs DATABASE_URL' }, async (t) => {
    const db = await openDatabase({ url: process.env.DATABASE_URL as string, poolSize: 1 })
    defer(t, () => db.close())
    assert.equal(db.kind, 'postgres')
  })
})
