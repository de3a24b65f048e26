import { readFileSync, unlinkSync } from 'node:fs'
import { mkdir, open, readFile, unlink } from 'node:fs/promises'
import { dirname } from 'node:path'

/**
 * Another live process on this machine holds the identity: two hosts on one key share one peer
 * id, and the mesh (peer tables, routes, the Oracle's registrations) sees them as one peer.
 */
export class IdentityInUseError extends Error {
  readonly path: string
  readonly pid: number
  constructor(path: string, pid: number) {
    super(
      `identity ${path} is already used by another shardmesh process on this machine (pid ${pid}): two hosts on one identity ` +
        `share one peer id, and routes cannot tell them apart ("no route covers layers"). Give each host its own key with ` +
        `--identity <file> (e.g. --identity ~/.shardmesh/host-2.key). If no such process runs, delete ${path}.lock.`,
    )
    this.name = 'IdentityInUseError'
    this.path = path
    this.pid = pid
  }
}

export type IdentityLock = {
  /** Gives the identity up (also done when the process exits). */
  release(): void
}

/** Whether a process with this pid runs (EPERM: it runs as another user). */
function alive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM'
  }
}

/**
 * Claims the identity file for this process with a `<path>.lock` file holding its pid, so a second
 * host started with the same (default) identity is refused with a message naming `--identity`
 * instead of silently sharing one peer id. A lock left by a process that is gone is taken over.
 */
export async function lockIdentity(path: string): Promise<IdentityLock> {
  const lockPath = `${path}.lock`
  await mkdir(dirname(path), { recursive: true })
  for (let attempt = 0; ; attempt++) {
    try {
      const file = await open(lockPath, 'wx', 0o600)
      await file.writeFile(String(process.pid))
      await file.close()
      break
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST' || attempt > 0) throw e
      const pid = Number.parseInt(await readFile(lockPath, 'utf8').catch(() => ''), 10)
      if (Number.isInteger(pid) && pid > 0 && pid !== process.pid && alive(pid)) throw new IdentityInUseError(path, pid)
      // Stale: its process is gone (or the file is not a lock we wrote).
      await unlink(lockPath).catch(() => undefined)
    }
  }
  let held = true
  const release = () => {
    if (!held) return
    held = false
    process.off('exit', release)
    try {
      // Only our own lock: a process that took over a lock we thought stale keeps its own.
      if (readFileSync(lockPath, 'utf8') === String(process.pid)) unlinkSync(lockPath)
    } catch {
      // Already gone.
    }
  }
  process.on('exit', release)
  return { release }
}
