/** A generated section of a document, between a begin and an end marker (used by the scripts/docs-*.ts generators and their tests). */
import { readFileSync, writeFileSync } from 'node:fs'

/** The text between the markers, trimmed; throws when a marker is missing. */
export function readSection(path: URL, begin: string, end: string): string {
  const doc = readFileSync(path, 'utf8')
  const start = doc.indexOf(begin)
  const stop = doc.indexOf(end)
  if (start < 0 || stop < start) throw new Error(`${path.pathname} lacks the ${begin} ... ${end} markers`)
  return doc.slice(start + begin.length, stop).trim()
}

/** Replaces the text between the markers with `content`. */
export function writeSection(path: URL, begin: string, end: string, content: string): void {
  readSection(path, begin, end)
  const doc = readFileSync(path, 'utf8')
  writeFileSync(path, `${doc.slice(0, doc.indexOf(begin) + begin.length)}\n${content}\n${doc.slice(doc.indexOf(end))}`)
}
