/**
 * Resolves the Apache Kafka broker and tools jars from Maven Central with Maven, once, into a cache
 * outside the work tree. A second start finds the cache and runs no Maven at all.
 */
import { execFile } from 'node:child_process'
import { createHash } from 'node:crypto'
import { existsSync, mkdirSync, readFileSync, readdirSync, renameSync, rmSync, writeFileSync } from 'node:fs'
import { homedir } from 'node:os'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { LauncherError } from './errors.js'
import type { Logger } from '../logger.js'

const run = promisify(execFile)

/** The broker version the pom pins. */
export const KAFKA_VERSION = '4.3.1'

/** The pom shipped with the package: `kafka/pom.xml` at the package root (found from src/ or dist/src/). */
export const DEFAULT_POM = findPackageFile('kafka/pom.xml')

function findPackageFile(relative: string): string {
  let dir = dirname(fileURLToPath(import.meta.url))
  for (let i = 0; i < 6; i++) {
    const candidate = join(dir, relative)
    if (existsSync(candidate)) return candidate
    dir = dirname(dir)
  }
  return resolve(relative)
}

/** `LIFELINE_KAFKA_CACHE`, else `~/.cache/lifeline/kafka-<version>`. */
export function defaultJarCache(): string {
  return process.env.LIFELINE_KAFKA_CACHE ?? join(process.env.XDG_CACHE_HOME ?? join(homedir(), '.cache'), 'lifeline', `kafka-${KAFKA_VERSION}`)
}

/** The java executable: `$JAVA_HOME/bin/java` when set, else `java` on PATH. */
export function javaCommand(): string {
  return process.env.JAVA_HOME ? join(process.env.JAVA_HOME, 'bin', 'java') : 'java'
}

/** Checks Java 17+ is present; returns its major version. */
export async function checkJava(): Promise<number> {
  let text: string
  try {
    const out = await run(javaCommand(), ['-version'])
    text = `${out.stderr}${out.stdout}`
  } catch (err) {
    throw new LauncherError('LL_LAUNCHER_JAVA_MISSING', `Java 17+ is needed to run the local Kafka broker, but \`${javaCommand()} -version\` failed: ${(err as Error).message}. Install a JDK (e.g. apt-get install openjdk-17-jre-headless) or set JAVA_HOME.`, { cause: err })
  }
  const match = /version "(\d+)(?:\.(\d+))?/.exec(text)
  const major = match ? (match[1] === '1' ? Number(match[2]) : Number(match[1])) : 0
  if (major < 17) {
    throw new LauncherError('LL_LAUNCHER_JAVA_MISSING', `Kafka ${KAFKA_VERSION} needs Java 17+, found: ${text.split('\n')[0] ?? 'unknown'}`)
  }
  return major
}

export interface ResolveJarsOptions {
  cacheDir?: string
  pom?: string
  logger?: Logger
}

export interface ResolvedJars {
  /** Folder holding every jar of the broker's runtime classpath. */
  libDir: string
  /** Classpath wildcard for `java -cp`. */
  classpath: string
  /** True when this call ran Maven (false: served from the cache). */
  resolved: boolean
}

/**
 * Returns the cached classpath, resolving it with Maven first when the cache is missing or was made
 * from a different pom.
 */
export async function resolveKafkaJars(options: ResolveJarsOptions = {}): Promise<ResolvedJars> {
  const cacheDir = options.cacheDir ?? defaultJarCache()
  const pom = options.pom ?? DEFAULT_POM
  if (!existsSync(pom)) throw new LauncherError('LL_LAUNCHER_RESOLVE', `broker pom not found at ${pom}`)
  const pomHash = createHash('sha256').update(readFileSync(pom)).digest('hex')
  const libDir = join(cacheDir, 'libs')
  const marker = join(cacheDir, 'complete')
  const classpath = join(libDir, '*')
  if (existsSync(marker) && readFileSync(marker, 'utf8').trim() === pomHash && readdirSync(libDir).some((f) => f.startsWith('kafka_2.13-'))) {
    return { libDir, classpath, resolved: false }
  }

  try {
    await run('mvn', ['-v'])
  } catch (err) {
    throw new LauncherError('LL_LAUNCHER_MAVEN_MISSING', `Maven (mvn) is needed once to download the Kafka ${KAFKA_VERSION} broker jars, but \`mvn -v\` failed: ${(err as Error).message}. Install it (apt-get install maven) or point LIFELINE_KAFKA_CACHE at a folder that already holds them.`, { cause: err })
  }
  mkdirSync(cacheDir, { recursive: true })
  const tmp = join(cacheDir, `libs.tmp-${process.pid}`)
  rmSync(tmp, { recursive: true, force: true })
  options.logger?.info({ pom, cacheDir }, `resolving Kafka ${KAFKA_VERSION} broker jars with Maven (once)`)
  try {
    await run(
      'mvn',
      ['-B', '-q', '-f', pom, 'org.apache.maven.plugins:maven-dependency-plugin:3.8.1:copy-dependencies', '-DincludeScope=runtime', `-DoutputDirectory=${tmp}`],
      { maxBuffer: 16 * 1024 * 1024, timeout: 15 * 60_000 },
    )
  } catch (err) {
    const e = err as { stdout?: string; stderr?: string; message: string }
    const tail = `${e.stdout ?? ''}${e.stderr ?? ''}`.split('\n').slice(-30).join('\n')
    rmSync(tmp, { recursive: true, force: true })
    throw new LauncherError('LL_LAUNCHER_RESOLVE', `Maven could not resolve the Kafka ${KAFKA_VERSION} jars: ${e.message}\n${tail}`, { cause: err })
  }
  // Swap in the complete folder only after Maven succeeded, so a killed resolve never leaves half a cache.
  rmSync(libDir, { recursive: true, force: true })
  renameSync(tmp, libDir)
  writeFileSync(marker, `${pomHash}\n`)
  return { libDir, classpath, resolved: true }
}
