import assert from 'node:assert/strict'
import { spawn, type ChildProcess } from 'node:child_process'
import { existsSync } from 'node:fs'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, test } from 'node:test'
import { REPO_ROOT } from '../../testing/fixtures.ts'
import { IdentityInUseError, lockIdentity } from './identityLock.ts'

const MAIN = join(REPO_ROOT, 'node-host', 'cli', 'main.ts')
const dirs: string[] = []
after(() => Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true }))))

/** `shardmesh start` without --identity: the identity is $SHARDMESH_HOME/identity.key. */
function startHost(home: string): { child: ChildProcess; output: () => string; exited: Promise<number | null>; serving: Promise<void> } {
  const child = spawn(process.execPath, [MAIN, 'start', '--device', 'cpu', '--layers', '0-8', '--listen', '/ip4/127.0.0.1/tcp/0'], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, SHARDMESH_HOME: home, LOG_LEVEL: 'info' },
  })
  let out = ''
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)))
  const serving = new Promise<void>((resolve, reject) => {
    const onData = (chunk: Buffer) => {
      out += chunk.toString()
      if (/"msg":"serving"/.test(out)) resolve()
    }
    child.stdout!.on('data', onData)
    child.stderr!.on('data', onData)
    void exited.then((code) => reject(new Error(`host exited with ${code}: ${out.slice(-2000)}`)))
  })
  serving.catch(() => undefined)
  return { child, output: () => out, exited, serving }
}

test('two hosts started on one machine without --identity: the second is refused, naming --identity; the first serves on', { timeout: 120_000 }, async () => {
  const home = await mkdtemp(join(tmpdir(), 'shardmesh-identity-'))
  dirs.push(home)
  const first = startHost(home)
  try {
    await first.serving
    const second = startHost(home)
    const code = await second.exited
    assert.equal(code, 1)
    assert.match(second.output(), /already used by another shardmesh process on this machine \(pid \d+\)/)
    assert.match(second.output(), /--identity <file>/)
    assert.equal(first.child.exitCode, null, 'the first host still runs')
  } finally {
    first.child.kill('SIGTERM')
    await first.exited
  }
  // Its lock went with it: the identity is free again.
  assert.equal(existsSync(join(home, 'identity.key.lock')), false)
  const lock = await lockIdentity(join(home, 'identity.key'))
  lock.release()
})

test('a lock whose process is gone is taken over; a live one is refused with IdentityInUseError', async () => {
  const home = await mkdtemp(join(tmpdir(), 'shardmesh-identity-'))
  dirs.push(home)
  const path = join(home, 'identity.key')
  // A pid that no process has (beyond the kernel's pid_max).
  await writeFile(`${path}.lock`, '99999999')
  const lock = await lockIdentity(path)
  // A second claim while a live process (this one's parent, the test runner) holds it is refused.
  await writeFile(`${path}.lock`, String(process.ppid))
  await assert.rejects(lockIdentity(path), (e: unknown) => e instanceof IdentityInUseError && e.pid === process.ppid && /--identity/.test(e.message))
  lock.release()
  assert.equal(existsSync(`${path}.lock`), true, 'release leaves a lock it does not own')
})
