import assert from 'node:assert/strict'
import { mkdir, mkdtemp, rm, utimes, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { test } from 'node:test'
import { buildApp, sourceFingerprint } from './buildApp.ts'

test('the source fingerprint changes when a source file does, not when a test file or node_modules does', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'shardmesh-fingerprint-'))
  try {
    await mkdir(join(dir, 'web', 'node_modules'), { recursive: true })
    await writeFile(join(dir, 'web', 'main.ts'), 'export {}')
    const first = await sourceFingerprint(['web'], dir)
    assert.equal(await sourceFingerprint(['web'], dir), first, 'stable')
    await writeFile(join(dir, 'web', 'main.test.ts'), 'test')
    await writeFile(join(dir, 'web', 'node_modules', 'x.js'), 'x')
    assert.equal(await sourceFingerprint(['web'], dir), first, 'tests and node_modules do not count')
    await utimes(join(dir, 'web', 'main.ts'), new Date(), new Date(Date.now() + 5000))
    assert.notEqual(await sourceFingerprint(['web'], dir), first, 'an edit (new mtime) counts')
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
})

test('a build already cached for these sources is served without building again', async () => {
  const cacheDir = await mkdtemp(join(tmpdir(), 'shardmesh-app-cache-'))
  try {
    const fingerprint = await sourceFingerprint()
    await mkdir(join(cacheDir, fingerprint), { recursive: true })
    await writeFile(join(cacheDir, fingerprint, 'index.html'), '<!doctype html>')
    let built = false
    const dir = await buildApp({ cacheDir, onBuild: () => (built = true) })
    assert.equal(dir, join(cacheDir, fingerprint))
    assert.equal(built, false)
  } finally {
    await rm(cacheDir, { recursive: true, force: true })
  }
})
