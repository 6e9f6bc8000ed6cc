/* global document, EventSource */
// Lifeline console: progressive enhancement only (every page works without this file).
// - A job page follows its progress over Server-Sent Events.
// - The records page counts the dead letters indexed since it loaded.
// - The JSON editor says whether its text parses, as you type.
'use strict'

function followJob(box) {
  const url = box.getAttribute('data-job-events')
  if (!url || typeof EventSource === 'undefined') return
  const bar = box.querySelector('progress')
  const status = box.querySelector('[data-job-field="status"]')
  const summary = box.querySelector('[data-job-field="summary"]')
  const source = new EventSource(url)
  source.addEventListener('progress', (event) => {
    const job = JSON.parse(event.data)
    if (bar) {
      bar.max = Math.max(1, Number(job.total))
      bar.value = Number(job.done)
    }
    if (status) status.textContent = job.status + (job.statusReason ? ' (' + job.statusReason + ')' : '')
    if (summary) summary.textContent = job.done + ' of ' + job.total + ' done: ' + job.succeeded + ' sent, ' + job.failed + ' failed, ' + job.skipped + ' skipped'
    box.setAttribute('data-status', job.status)
  })
  source.addEventListener('end', () => {
    source.close()
    box.setAttribute('data-ended', 'true')
  })
  source.onerror = () => source.close()
}

function checkJson(area) {
  const out = document.getElementById(area.getAttribute('aria-describedby'))
  const check = () => {
    try {
      JSON.parse(area.value)
      area.removeAttribute('aria-invalid')
      if (out) out.textContent = 'Valid JSON.'
    } catch (err) {
      area.setAttribute('aria-invalid', 'true')
      if (out) out.textContent = 'Not valid JSON: ' + err.message
    }
  }
  area.addEventListener('input', check)
}

function followNewRecords(box) {
  const url = box.getAttribute('data-new-records')
  const out = box.querySelector('[data-new-count]')
  if (!url || !out || typeof EventSource === 'undefined') return
  box.hidden = false
  const source = new EventSource(url)
  source.addEventListener('new', (event) => {
    out.textContent = String(JSON.parse(event.data).count)
  })
  source.onerror = () => source.close()
}

document.addEventListener('DOMContentLoaded', () => {
  for (const box of document.querySelectorAll('[data-new-records]')) followNewRecords(box)
  for (const box of document.querySelectorAll('[data-job-events]')) followJob(box)
  for (const area of document.querySelectorAll('textarea[data-json-editor]')) checkJson(area)
})
