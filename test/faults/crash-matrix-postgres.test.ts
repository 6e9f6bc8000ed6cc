import { test } from 'node:test'
import { crashMatrix } from './crash-matrix.js'

if (process.env.DATABASE_URL) crashMatrix('postgres')
else test('the crash-point matrix on the PostgreSQL server', { skip: 'needs DATABASE_URL' }, () => undefined)
