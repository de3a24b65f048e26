import { readdir, readFile } from 'node:fs/promises'

/**
 * Memory of one worker's Chromium: its renderers (the page) and the rest (browser, GPU, utility
 * processes). Proportional set size (PSS) where the kernel gives it: Chromium's processes share
 * much of their memory, and summing their RSS would count it once per process.
 */
export type BrowserMemory = { browserPid: number; pageRssBytes: number; browserRssBytes: number; rendererPids: number[] }

type Proc = { pid: number; ppid: number; cmdline: string; rssBytes: number }

async function pssBytes(p: Proc): Promise<number> {
  const m = /^Pss:\s+(\d+) kB/m.exec(await readFile(`/proc/${p.pid}/smaps_rollup`, 'utf8').catch(() => ''))
  return m ? Number(m[1]) * 1024 : p.rssBytes
}

const PAGE = 4096

async function readProcs(): Promise<Proc[]> {
  const out: Proc[] = []
  for (const name of await readdir('/proc')) {
    if (!/^\d+$/.test(name)) continue
    try {
      const [stat, cmdline, statm] = await Promise.all([readFile(`/proc/${name}/stat`, 'utf8'), readFile(`/proc/${name}/cmdline`, 'utf8'), readFile(`/proc/${name}/statm`, 'utf8')])
      // The command name in stat is parenthesised and may hold spaces: the fields after the last ')' are fixed.
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1])
      out.push({ pid: Number(name), ppid, cmdline: cmdline.replaceAll('\0', ' '), rssBytes: Number(statm.split(' ')[1]) * PAGE })
    } catch {
      // The process ended while being read.
    }
  }
  return out
}

/**
 * Finds the Chromium started on `userDataDir` (each worker has its own profile, hence its own
 * browser) through /proc, and sums its process tree's RSS. Undefined when none runs (Linux only).
 */
export async function readBrowserMemory(userDataDir: string): Promise<BrowserMemory | undefined> {
  const procs = await readProcs()
  const root = procs.find((p) => p.cmdline.includes(`--user-data-dir=${userDataDir} `) && !p.cmdline.includes('--type='))
  if (!root) return undefined
  const children = new Map<number, Proc[]>()
  for (const p of procs) children.set(p.ppid, [...(children.get(p.ppid) ?? []), p])
  const tree: Proc[] = []
  const todo = [root]
  while (todo.length) {
    const p = todo.pop()!
    tree.push(p)
    todo.push(...(children.get(p.pid) ?? []))
  }
  const renderers = tree.filter((p) => p.cmdline.includes('--type=renderer'))
  const pss = new Map(await Promise.all(tree.map(async (p) => [p.pid, await pssBytes(p)] as const)))
  const sum = (ps: Proc[]) => ps.reduce((s, p) => s + (pss.get(p.pid) ?? 0), 0)
  return { browserPid: root.pid, pageRssBytes: sum(renderers), browserRssBytes: sum(tree) - sum(renderers), rendererPids: renderers.map((p) => p.pid) }
}

/** Memory the kernel says can be used now without swapping (MemAvailable), in bytes. */
export async function readAvailableMemory(): Promise<number> {
  const m = /^MemAvailable:\s+(\d+) kB/m.exec(await readFile('/proc/meminfo', 'utf8'))
  if (!m) throw new Error('/proc/meminfo has no MemAvailable')
  return Number(m[1]) * 1024
}
