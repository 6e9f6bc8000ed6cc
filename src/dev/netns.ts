/**
 * Linux network namespaces for partition tests (root only): a namespace joined to the host by a veth
 * pair on a private /30, so a process started inside it reaches the host only through that link, and
 * taking the link down is a real network partition (packets dropped by the kernel, no reset).
 *
 * A process in the namespace sees its own loopback: to reach services that listen on the host's
 * 127.0.0.1 it needs a forwarder inside (e.g. {@link startTcpProxy} from tcp-proxy.ts) to `hostIp`,
 * where a proxy on the host listens. Unix sockets (a file path) work across namespaces unchanged.
 *
 * Orphans: a watchdog shell deletes the namespace (and with it the veth pair) when the creating process
 * dies, even by SIGKILL.
 *
 * @module
 * @example
 * const ns = await createNetns({ name: 'rh-1', subnet: [10, 213, 1] })
 * spawn('ip', ['netns', 'exec', ns.name, 'node', 'worker.js'])
 * await ns.down()  // partition
 * await ns.up()    // heal
 * await ns.close()
 */
import { execFile, spawn } from 'node:child_process'
import { promisify } from 'node:util'
import { LifelineError } from '../errors.js'
import { alive } from './processes.js'

const run = promisify(execFile)

export interface NetnsOptions {
  /** Namespace name (letters, digits, `-`; at most 12 characters: interface names derive from it). */
  name: string
  /** The first three octets of the /30: host end `.1`, namespace end `.2` (e.g. `[10, 213, 1]`). */
  subnet: [number, number, number]
}

export interface Netns {
  readonly name: string
  /** The host end's address (listen here for the namespace's traffic). */
  readonly hostIp: string
  /** The namespace end's address. */
  readonly nsIp: string
  /** The host end's interface. */
  readonly hostIf: string
  /** The command prefix that runs a program inside: `['ip', 'netns', 'exec', name]`. */
  readonly exec: readonly string[]
  /** Takes the link down: a partition. */
  down(): Promise<void>
  /** Brings the link up again. */
  up(): Promise<void>
  /** Deletes the namespace and its link. Idempotent. */
  close(): Promise<void>
  [Symbol.asyncDispose](): Promise<void>
}

async function ip(args: string[]): Promise<void> {
  try {
    await run('ip', args)
  } catch (err) {
    const e = err as { stderr?: string; message: string }
    throw new LifelineError('LL_FAULT', `ip ${args.join(' ')} failed: ${(e.stderr ?? e.message).trim()}`, { cause: err })
  }
}

/** Whether namespaces can be made here: root and a working `ip netns`. The reason when not. */
export async function netnsSupport(): Promise<{ ok: true } | { ok: false; reason: string }> {
  if (process.getuid?.() !== 0) return { ok: false, reason: 'not root: network namespaces and veth links need CAP_NET_ADMIN' }
  try {
    await run('ip', ['netns', 'list'])
    return { ok: true }
  } catch (err) {
    return { ok: false, reason: `\`ip netns\` does not work here: ${(err as Error).message}` }
  }
}

/** Creates a namespace with a veth link to the host, both ends up, loopback up inside. */
export async function createNetns(options: NetnsOptions): Promise<Netns> {
  const { name } = options
  if (!/^[A-Za-z0-9-]{1,12}$/.test(name)) throw new LifelineError('LL_ARGUMENT_INVALID', `netns name must be 1-12 letters, digits or '-', got ${JSON.stringify(name)}`)
  const [a, b, c] = options.subnet
  const hostIp = `${a}.${b}.${c}.1`
  const nsIp = `${a}.${b}.${c}.2`
  const hostIf = `h-${name}`
  const nsIf = `n-${name}`
  await ip(['netns', 'add', name])
  const watchdog = spawn('sh', ['-c', `while kill -0 ${process.pid} 2>/dev/null; do sleep 1; done; ip netns del ${name} 2>/dev/null; exit 0`], { detached: true, stdio: 'ignore' })
  watchdog.unref()
  try {
    await ip(['link', 'add', hostIf, 'type', 'veth', 'peer', 'name', nsIf])
    await ip(['link', 'set', nsIf, 'netns', name])
    await ip(['addr', 'add', `${hostIp}/30`, 'dev', hostIf])
    await ip(['link', 'set', hostIf, 'up'])
    await ip(['netns', 'exec', name, 'ip', 'addr', 'add', `${nsIp}/30`, 'dev', nsIf])
    await ip(['netns', 'exec', name, 'ip', 'link', 'set', nsIf, 'up'])
    await ip(['netns', 'exec', name, 'ip', 'link', 'set', 'lo', 'up'])
  } catch (err) {
    await run('ip', ['netns', 'del', name]).catch(() => undefined)
    await run('ip', ['link', 'del', hostIf]).catch(() => undefined)
    throw err
  }
  let closing: Promise<void> | undefined
  const ns: Netns = {
    name,
    hostIp,
    nsIp,
    hostIf,
    exec: ['ip', 'netns', 'exec', name],
    down: () => ip(['link', 'set', hostIf, 'down']),
    async up() {
      await ip(['link', 'set', hostIf, 'up'])
      await ip(['netns', 'exec', name, 'ip', 'link', 'set', nsIf, 'up'])
    },
    close() {
      closing ??= (async () => {
        await ip(['netns', 'del', name])
        // The host end goes with its peer; make sure, in case the kernel kept it.
        await run('ip', ['link', 'del', hostIf]).catch(() => undefined)
        if (watchdog.pid !== undefined && alive(watchdog.pid)) process.kill(watchdog.pid, 'SIGKILL')
      })()
      return closing
    },
    [Symbol.asyncDispose]: () => ns.close(),
  }
  return ns
}
