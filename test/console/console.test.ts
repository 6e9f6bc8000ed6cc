/**
 * The operator console in a real browser (Debian's chromium through playwright-core) against a real DLQ
 * processor, Kafka broker and database: sign-in, overview, filters, edit-and-replay, discard, a bulk
 * redrive approved by a second person, roles, session expiry, XSS payloads and accessibility (axe-core).
 * One processor and one browser for the file; each user in a browser context of their own.
 */
import assert from 'node:assert/strict'
import { mkdirSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { test } from 'node:test'
import { defineReconciliation, runReconciliation } from '../../src/effects/reconcile.js'
import { listFailures, recordFailure } from '../../src/effects/compensation.js'
import { ProtocolStore } from '../../src/ordering/protocol-store.js'
import { createParkedKeys } from '../../src/ordering/state-store.js'
import { randomName } from '../helpers/db.js'
import { waitFor } from '../helpers/kafka.js'
import { axeViolations, consoleFixture, csrfOf, deadLetter, type ConsoleFixture } from '../helpers/console.js'

const XSS = {
  script: '<script>alert("key")</script>',
  img: '"><img src=x onerror=alert("img")>',
  js: 'javascript:alert("js")',
  svg: '<svg onload=alert("svg")><circle r=1 /></svg>',
}

/** What an injected payload would leave in the document (a string: evaluated in the page, not typed against node's globals). */
const INJECTED = `({
  inlineScripts: document.querySelectorAll('script:not([src])').length,
  imgs: document.querySelectorAll('img').length,
  handlers: [...document.querySelectorAll('*')].filter((e) => [...e.attributes].some((a) => a.name.startsWith('on'))).length,
  jsLinks: [...document.querySelectorAll('a')].filter((a) => (a.getAttribute('href') || '').trim().toLowerCase().startsWith('javascript:')).length,
  svgs: [...document.querySelectorAll('svg')].filter((s) => s.getAttribute('role') !== 'img').length,
})`

/** How many elements a payload would have injected (inline scripts, images, event handlers, javascript: links, foreign SVG). */
const INJECTED_COUNT = `(() => { const r = ${INJECTED}; return r.inlineScripts + r.imgs + r.handlers + r.jsLinks + r.svgs })()`

test('the operator console', { timeout: 300_000 }, async (t) => {
  const f: ConsoleFixture = await consoleFixture(t, { approvals: { bulkThreshold: 2 } })
  const [editMe, discardMe, bulk1, bulk2, bulk3, xss] = await f.index([
    deadLetter(0, 'k-edit', '{"order":"o-1","amount":-5}', { context: { errorClass: 'ValidationError', errorCode: 'E_AMOUNT', errorMessage: 'amount must be positive', fingerprint: 'fp-amount' } }),
    deadLetter(1, 'k-discard', '{"order":"o-2","amount":10}', { context: { errorClass: 'ValidationError', errorCode: 'E_AMOUNT', errorMessage: 'amount must be positive', fingerprint: 'fp-amount' } }),
    deadLetter(2, 'k-bulk-1', '{"order":"o-3"}', { context: { errorCode: 'E_TAX', fingerprint: 'fp-tax' } }),
    deadLetter(3, 'k-bulk-2', '{"order":"o-4"}', { context: { errorCode: 'E_TAX', fingerprint: 'fp-tax' } }),
    deadLetter(4, 'k-bulk-3', '{"order":"o-5"}', { context: { errorCode: 'E_TAX', fingerprint: 'fp-tax' } }),
    deadLetter(5, XSS.script, JSON.stringify({ note: XSS.img, link: XSS.js, svg: XSS.svg }), {
      headers: [
        { key: XSS.svg, value: Buffer.from(XSS.img) },
        { key: 'link', value: Buffer.from(XSS.js) },
      ],
      context: { errorClass: XSS.script, errorCode: 'E_XSS', errorMessage: `${XSS.img} ${XSS.svg}`, errorStack: `Error: ${XSS.script}\n    at ${XSS.img}`, fingerprint: 'fp-xss' },
    }),
  ])
  const dialogs: string[] = []

  await t.test('sign in, see the overview with its chart, strict CSP on every page', async (tt) => {
    const { page } = await f.signIn(tt, 'operator')
    page.on('dialog', (d) => void dialogs.push(d.message()))
    await page.getByRole('heading', { name: 'Overview' }).waitFor()
    assert.equal(await page.locator('svg[role="img"] rect.bar').count(), 24)
    assert.match((await page.locator('#chart-title').textContent()) ?? '', /6 in all/)
    const res = await page.request.get('/console')
    const csp = res.headers()['content-security-policy'] ?? ''
    assert.match(csp, /default-src 'self'/)
    assert.doesNotMatch(csp, /unsafe-inline/)
    const cookie = (await page.context().cookies()).find((c) => c.name === 'll_console')!
    assert.equal(cookie.httpOnly, true)
    assert.equal(cookie.sameSite, 'Strict')
    assert.deepEqual(await axeViolations(page), [])
  })

  await t.test('find a record by filter, edit it, see the diff, replay it and see it applied', async (tt) => {
    const { page } = await f.signIn(tt, 'operator')
    await page.goto('/console/records')
    await page.getByLabel('Key').fill('k-edit')
    await page.getByRole('button', { name: 'Filter' }).click()
    const rows = page.locator('table tbody tr')
    assert.equal(await rows.count(), 1)
    assert.deepEqual(await axeViolations(page), [])
    await rows.first().getByRole('link').click()
    await page.getByRole('heading', { name: `Record ${editMe}` }).waitFor()
    assert.deepEqual(await axeViolations(page), [])
    await page.getByRole('link', { name: 'Edit and replay…' }).click()
    const editor = page.getByLabel('Value (JSON)')
    await editor.fill('{"order":"o-1",')
    await page.getByRole('button', { name: 'Show the changes' }).click()
    assert.match((await page.getByRole('alert').textContent()) ?? '', /not valid JSON/)
    await page.getByLabel('Value (JSON)').fill('{"order":"o-1","amount":5}')
    await page.getByRole('button', { name: 'Show the changes' }).click()
    const diff = page.locator('table.diff tbody tr')
    assert.equal(await diff.count(), 1)
    assert.match((await diff.first().textContent()) ?? '', /\/amount.*replace.*-5.*5/)
    assert.deepEqual(await axeViolations(page), [])
    const before = await f.endOffset(f.origin)
    await page.getByRole('button', { name: 'Save and replay' }).click()
    await page.getByText('Edited and replayed.').waitFor()
    assert.match((await page.locator('.facts').first().textContent()) ?? '', /replayed/)
    assert.equal(await f.endOffset(f.origin), before + 1, 'the edited record reached its origin topic')
  })

  await t.test('discard another with a reason', async (tt) => {
    const { page } = await f.signIn(tt, 'operator')
    await page.goto(`/console/records/${discardMe}`)
    await page.getByLabel('Reason (discard)').fill(`refunded by hand ${XSS.img}`)
    await page.getByRole('button', { name: 'Discard' }).click()
    await page.getByText('Discarded.').waitFor()
    const facts = (await page.locator('.facts').first().textContent()) ?? ''
    assert.match(facts, /discarded/)
    assert.ok(facts.includes(XSS.img), 'the reason shows as text')
    assert.equal(await page.getByRole('button', { name: 'Discard' }).count(), 0, 'a discarded record offers no more actions')
  })

  await t.test('a bulk redrive over the threshold: requested by one person, approved by another, watched to the end', async (tt) => {
    const { page } = await f.signIn(tt, 'operator')
    await page.goto('/console/redrive?fingerprint=fp-tax&status=pending')
    await page.getByRole('button', { name: 'Count (dry run)' }).click()
    assert.match((await page.locator('#dry-run-count').textContent()) ?? '', /^3 record/)
    assert.deepEqual(await axeViolations(page), [])
    await page.getByLabel('Rate (records per second)').fill('50')
    await page.getByRole('button', { name: 'Request approval' }).click()
    await page.getByText('This job waits for an approver').waitFor()
    const jobUrl = page.url().replace(/\?.*$/, '')
    assert.equal(await page.locator('[data-job-field="status"]').textContent(), 'awaiting-approval')

    // The requester sees their own request but may not decide it (and has no approver role anyway).
    await page.goto('/console/approvals')
    assert.equal(await page.getByRole('button', { name: 'Approve' }).count(), 0)

    const second = await f.signIn(tt, 'approver')
    second.page.on('dialog', (d) => void dialogs.push(d.message()))
    await second.page.goto('/console/approvals')
    const card = second.page.locator('article.approval').first()
    assert.match((await card.textContent()) ?? '', /operator \(owner olga\)/)
    assert.deepEqual(await axeViolations(second.page), [])
    await card.getByRole('button', { name: 'Approve' }).click()
    await second.page.getByText('Approved and executed.').waitFor()

    await page.goto(jobUrl)
    await page.locator('.job[data-ended="true"]').waitFor({ timeout: 60_000 })
    assert.equal(await page.locator('[data-job-field="status"]').textContent(), 'completed')
    assert.match((await page.locator('[data-job-field="summary"]').textContent()) ?? '', /^3 of 3 done: 3 sent/)
    assert.equal(await page.evaluate("document.querySelector('progress').value"), 3)
    assert.deepEqual(await axeViolations(page), [])
    for (const id of [bulk1, bulk2, bulk3]) {
      await page.goto(`/console/records/${id}`)
      assert.match((await page.locator('.facts').first().textContent()) ?? '', /replayed/)
    }
  })

  await t.test('a viewer sees no mutating control, and a forged POST from their session is refused', async (tt) => {
    const { page } = await f.signIn(tt, 'viewer')
    for (const path of ['/console', '/console/records', `/console/records/${xss}`, '/console/groups', '/console/jobs', '/console/approvals', '/console/keys']) {
      await page.goto(path)
      const posts = await page.locator('form[method="post"]').evaluateAll((forms) => forms.map((f) => f.getAttribute('action')))
      assert.deepEqual(posts, ['/console/sign-out'], `${path}: only the sign-out form`)
      assert.equal(await page.getByRole('link', { name: /Edit and replay|Bulk redrive|Audit log/ }).count(), 0, path)
      assert.deepEqual(await axeViolations(page), [], path)
    }
    const csrf = await csrfOf(page)
    const forged = await page.request.post(`/console/records/${xss}/discard`, { form: { _csrf: csrf, reason: 'forged' } })
    assert.equal(forged.status(), 403)
    const noCsrf = await page.request.post(`/console/records/${xss}/discard`, { form: { reason: 'forged' } })
    assert.equal(noCsrf.status(), 403)
    assert.equal((await page.request.get('/console/redrive')).status(), 403)
    assert.equal((await page.request.get(`/console/records/${xss}/edit`)).status(), 403)
    await page.goto(`/console/records/${xss}`)
    assert.match((await page.locator('.facts').first().textContent()) ?? '', /pending/, 'nothing happened to the record')
  })

  await t.test('an operator without CSRF token is refused; a sign-in form from elsewhere is refused', async (tt) => {
    const { page } = await f.signIn(tt, 'operator')
    assert.equal((await page.request.post(`/console/records/${xss}/discard`, { form: { _csrf: 'x'.repeat(43), reason: 'r' } })).status(), 403)
    const other = await f.browser.newContext({ baseURL: f.url })
    tt.after(() => other.close())
    assert.equal((await other.request.post('/console/sign-in', { form: { token: f.tokens.operator, _csrf: 'guess' } })).status(), 403)
  })

  await t.test('an expired session is sent to sign-in; sign-out ends the session', async (tt) => {
    const { page } = await f.signIn(tt, 'operator')
    f.skewSessions(13 * 3_600_000)
    try {
      await page.goto('/console/records')
      assert.match(page.url(), /\/console\/sign-in\?next=%2Fconsole%2Frecords&expired=1$/)
      await page.getByText('Your session has ended').waitFor()
    } finally {
      f.skewSessions(0)
    }
    const again = await f.signIn(tt, 'operator')
    await again.page.getByRole('button', { name: 'Sign out' }).click()
    await again.page.waitForURL(/\/console\/sign-in$/)
    await again.page.goto('/console')
    assert.match(again.page.url(), /\/console\/sign-in/)
    assert.deepEqual(await axeViolations(again.page), [])
  })

  await t.test('XSS payloads in keys, values, headers, errors, stacks and reasons render as text', async (tt) => {
    const { page } = await f.signIn(tt, 'approver')
    page.on('dialog', (d) => void dialogs.push(d.message()))
    for (const path of ['/console', '/console/groups', '/console/records', `/console/records/${xss}`, `/console/records/${xss}?view=hex`, '/console/audit', `/console/records/${discardMe}`]) {
      await page.goto(path)
      const injected = await page.evaluate(INJECTED)
      assert.deepEqual(injected, { inlineScripts: 0, imgs: 0, handlers: 0, jsLinks: 0, svgs: 0 }, path)
    }
    await page.goto(`/console/records/${xss}`)
    const text = (await page.locator('main').textContent()) ?? ''
    for (const payload of [XSS.script, XSS.svg, XSS.js]) assert.ok(text.includes(payload), `${payload} shows as text`)
    assert.ok((await page.locator('pre.stack').textContent())?.includes(XSS.script))
    assert.deepEqual(await axeViolations(page), [])
    await page.goto('/console/audit')
    assert.deepEqual(await axeViolations(page), [])
  })

  await t.test('resolve a record; pause, resume and cancel a job; reject a request with a reason', async (tt) => {
    const ids = await f.index([20, 21, 22, 23, 24, 25].map((o) => deadLetter(o, `k-job-${o}`, `{"n":${o}}`, { context: { errorCode: 'E_JOB', fingerprint: 'fp-job' } })))
    const { page } = await f.signIn(tt, 'approver')
    await page.goto(`/console/records/${ids[0]}`)
    await page.getByLabel('Reason (resolve)').fill('fixed upstream')
    await page.getByRole('button', { name: 'Resolve' }).click()
    await page.getByText('Resolved.').waitFor()
    assert.match((await page.locator('.facts').first().textContent()) ?? '', /resolved/)

    // An operator's redrive of five records at one a second (over the threshold: approved first), then
    // paused, resumed and cancelled while it runs.
    const op = await f.signIn(tt, 'operator')
    await op.page.goto('/console/redrive?fingerprint=fp-job&status=pending')
    await op.page.getByRole('button', { name: 'Count (dry run)' }).click()
    assert.match((await op.page.locator('#dry-run-count').textContent()) ?? '', /^5 record/)
    await op.page.getByLabel('Rate (records per second)').fill('1')
    await op.page.getByRole('button', { name: 'Request approval' }).click()
    await op.page.getByText('This job waits for an approver').waitFor()
    const jobUrl = op.page.url().replace(/\?.*$/, '')
    await page.goto('/console/approvals')
    await page.locator('article.approval').first().getByRole('button', { name: 'Approve' }).click()
    await page.getByText('Approved and executed.').waitFor()
    await op.page.goto(jobUrl)
    await op.page.getByRole('button', { name: 'Pause' }).click()
    await op.page.getByText('Paused.').waitFor()
    assert.match((await op.page.locator('[data-job-field="status"]').textContent()) ?? '', /^paused/)
    assert.equal(await op.page.getByRole('button', { name: 'Pause' }).count(), 0)
    await op.page.getByRole('button', { name: 'Resume' }).click()
    await op.page.getByText('Resuming.').waitFor()
    await op.page.getByRole('button', { name: 'Cancel' }).click()
    await op.page.getByText('Cancelled.').waitFor()
    assert.match((await op.page.locator('[data-job-field="status"]').textContent()) ?? '', /^cancelled/)
    assert.deepEqual(await axeViolations(op.page), [])

    // A request to replay them elsewhere (an operator's other target needs an approver), rejected with a reason.
    await op.page.goto('/console/redrive?fingerprint=fp-job&status=pending')
    await op.page.getByRole('button', { name: 'Count (dry run)' }).click()
    await op.page.getByLabel('Target topic (empty: each record\'s origin)').fill(`${f.origin}-elsewhere`)
    // The button's label follows the dry run's count (how many the cancelled job left pending varies with how
    // far its pipelined batches got); the other target alone makes the server ask for an approval.
    await op.page.getByRole('button', { name: /^(Request approval|Start the redrive)$/ }).click()
    await op.page.getByText('This job waits for an approver').waitFor()
    await page.goto('/console/approvals')
    const card = page.locator('article.approval').first()
    assert.match((await card.textContent()) ?? '', /needs approval for: .*target/)
    await card.getByLabel(/Reason \(reject\)/).fill(`not today ${XSS.script}`)
    await card.getByRole('button', { name: 'Reject' }).click()
    await page.getByText('Rejected.').waitFor()
    await page.goto('/console/approvals?status=rejected')
    assert.ok(((await page.locator('article.approval').first().textContent()) ?? '').includes(`not today ${XSS.script}`))
    await op.page.reload()
    assert.match((await op.page.locator('[data-job-field="status"]').textContent()) ?? '', /^cancelled/)
  })

  await t.test('the records page counts dead letters indexed after it loaded (Server-Sent Events)', async (tt) => {
    const { page } = await f.signIn(tt, 'viewer')
    await page.goto('/console/records')
    const count = page.locator('[data-new-count]')
    await page.locator('[data-new-records]').waitFor()
    assert.equal(await count.textContent(), '0')
    await f.index([deadLetter(40, 'k-new', '{"n":40}'), deadLetter(41, 'k-new', '{"n":41}')])
    await page.locator('[data-new-count]', { hasText: '2' }).waitFor({ timeout: 15_000 })
  })

  await t.test('parked keys (release), compensation failures (settle) and reconciliation findings', async (tt) => {
    // A key parked behind a dead letter, as the runtime's protocol store writes it, with a record waiting.
    const ps = new ProtocolStore(f.db)
    const group = 'billing'
    const fence = { topic: f.origin, partition: 0, epoch: (await ps.claim(group, f.origin, 0, 'member-a', true)).epoch }
    const parkedKey = Buffer.from(XSS.img)
    assert.equal(await ps.moveHead(fence, group, { topic: f.origin, partition: 0, key: parkedKey, expect: { status: 'none' }, token: 't1', headOffset: 100, location: 'dlq', errorCode: 'E_XSS', errorMessage: XSS.svg, copy: { topic: `${f.origin}.dlq`, partition: 0, key: parkedKey, value: Buffer.from('v'), headers: [], timestamp: Date.now() } }), 'ok')
    assert.equal(await ps.store(fence, group, { topic: f.origin, partition: 0, key: parkedKey, offset: 101, value: Buffer.from('v'), headers: [], timestamp: Date.now() }), 'stored')
    const failure = await recordFailure(f.db, { consumer: 'billing', topic: f.origin, partition: 0, offset: 7, key: Buffer.from(XSS.script), errorCode: 'E_REFUND', errorMessage: XSS.img, compensations: ['refund'] })
    const stock = defineReconciliation({
      name: randomName('stock'),
      source: { read: async (cursor) => ({ rows: cursor === null ? [{ key: 'a', value: { qty: '1' } }, { key: XSS.script, value: { qty: XSS.svg } }] : [], next: cursor === null ? 'end' : null }) },
      target: { get: async () => new Map([['a', { qty: '2' }]]) },
      key: (k: string) => k,
    })
    const run = await runReconciliation(stock, { db: f.db })

    const { page } = await f.signIn(tt, 'operator')
    await page.goto('/console/keys')
    assert.deepEqual(await axeViolations(page), [])
    await page.getByRole('link', { name: XSS.img }).click()
    assert.match((await page.locator('#h-key').textContent()) ?? '', /Key "><img/)
    assert.equal(await page.locator('main ol li').count(), 1, 'its one waiting record')
    await page.getByLabel('Reason (release)').fill('refunded by hand')
    await page.getByRole('button', { name: 'Release' }).click()
    await page.getByText('Released: its records replay in order.').waitFor()
    assert.equal((await createParkedKeys(f.db).list({ group, status: 'parked' })).length, 0)

    await page.goto('/console/failures')
    assert.deepEqual(await axeViolations(page), [])
    const row = page.locator('tbody tr', { hasText: 'E_REFUND' })
    assert.ok(((await row.textContent()) ?? '').includes(XSS.img))
    await row.getByLabel('Reason').fill('refunded by hand')
    await row.getByRole('button', { name: 'Resolve' }).click()
    await page.getByText('Marked RESOLVED.').waitFor()
    const settled = (await listFailures(f.db, { status: 'RESOLVED' })).find((x) => x.id === failure.id)
    assert.equal(settled?.resolvedBy, 'operator')

    await page.goto('/console/reconcile')
    assert.deepEqual(await axeViolations(page), [])
    await page.getByRole('link', { name: `run ${run.id}` }).click()
    const findings = page.locator('tbody tr')
    assert.equal(await findings.count(), 2)
    assert.ok(((await page.locator('main').textContent()) ?? '').includes(XSS.script))
    assert.deepEqual(await axeViolations(page), [])
    assert.equal(await page.evaluate(INJECTED_COUNT), 0)

    // A viewer sees all three without a control, and is refused the posts.
    const viewer = await f.signIn(tt, 'viewer')
    for (const path of ['/console/keys', '/console/failures', `/console/reconcile/${run.id}`]) {
      await viewer.page.goto(path)
      assert.deepEqual(await viewer.page.locator('form[method="post"]').evaluateAll((forms) => forms.map((x) => x.getAttribute('action'))), ['/console/sign-out'], path)
    }
    const csrf = await csrfOf(viewer.page)
    assert.equal((await viewer.page.request.post(`/console/failures/${failure.id}/settle`, { form: { _csrf: csrf, status: 'IGNORED', reason: 'forged' } })).status(), 403)
    assert.equal((await viewer.page.request.post('/console/keys/release', { form: { _csrf: csrf, group, topic: f.origin, key: parkedKey.toString('base64url'), reason: 'forged' } })).status(), 403)
  })

  // docs/console.md's screenshots, taken from this test's data when asked for (they are committed, not rewritten by every run).
  await t.test('screenshots for docs/console.md', { skip: process.env.LIFELINE_CONSOLE_SCREENSHOTS === undefined && 'set LIFELINE_CONSOLE_SCREENSHOTS=1 to take them' }, async (tt) => {
    const dir = fileURLToPath(new URL('../../docs/console/', import.meta.url))
    mkdirSync(dir, { recursive: true })
    const { page } = await f.signIn(tt, 'approver')
    await page.setViewportSize({ width: 1280, height: 900 })
    const shots: Array<[string, string]> = [
      ['overview', '/console'],
      ['groups', '/console/groups'],
      ['records', '/console/records?fingerprint=fp-tax'],
      ['record', `/console/records/${discardMe}`],
      ['jobs', '/console/jobs'],
      ['approvals', '/console/approvals?status=executed'],
      ['audit', '/console/audit'],
    ]
    for (const [name, path] of shots) {
      await page.goto(path)
      await page.screenshot({ path: `${dir}${name}.png`, fullPage: false })
    }
    const op = await f.signIn(tt, 'operator')
    await op.page.setViewportSize({ width: 1280, height: 900 })
    await op.page.goto(`/console/records/${xss}/edit`)
    await op.page.getByRole('button', { name: 'Show the changes' }).click()
    await op.page.goto('/console/redrive?fingerprint=fp-amount')
    await op.page.getByRole('button', { name: 'Count (dry run)' }).click()
    await op.page.screenshot({ path: `${dir}redrive.png` })
    await op.page.goto(`/console/records/${bulk1}/edit`)
    await op.page.getByLabel('Value (JSON)').fill('{"order":"o-3","amount":12}')
    await op.page.getByRole('button', { name: 'Show the changes' }).click()
    await op.page.screenshot({ path: `${dir}edit.png` })
  })

  assert.deepEqual(dialogs, [], 'no dialog fired')
  assert.deepEqual(f.cspReports, [], 'no Content-Security-Policy violation was reported')

  await t.test('a violation would have been reported: an image from elsewhere, added through the debugger, is blocked and reported', async (tt) => {
    const { page } = await f.signIn(tt, 'viewer')
    await page.evaluate(`document.body.insertAdjacentHTML('beforeend', '<img alt="" src="http://192.0.2.1/probe.png">')`)
    await waitFor(() => f.cspReports.length > 0, 'the browser to report the violation', 15_000)
    assert.match(JSON.stringify(f.cspReports[0]), /img-src/)
  })
})
