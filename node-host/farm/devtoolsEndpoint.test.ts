import assert from 'node:assert/strict'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { test } from 'node:test'
import { forgetDevtoolsEndpoint, parseDevtoolsActivePort, readDevtoolsEndpoint } from './devtoolsEndpoint.ts'

test('a DevToolsActivePort file gives the browser target on loopback; anything else gives none', () => {
  assert.equal(parseDevtoolsActivePort('41235\n/devtools/browser/5f0c9a2e-1b7e-4c1d-9a55-2d3a8e3f4b6c\n'), 'ws://127.0.0.1:41235/devtools/browser/5f0c9a2e-1b7e-4c1d-9a55-2d3a8e3f4b6c')
  for (const bad of ['', '41235\n', 'x\n/devtools/browser/a', '99999\n/devtools/browser/a', '41235\n/devtools/page/a', '41235\n/devtools/browser/a?b=c']) assert.equal(parseDevtoolsActivePort(bad), undefined, JSON.stringify(bad))
})

test('the endpoint is read once Chromium writes it, and a previous run\'s is forgotten first', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'devtools-'))
  try {
    await writeFile(join(dir, 'DevToolsActivePort'), '1\n/devtools/browser/old\n')
    await forgetDevtoolsEndpoint(dir)
    assert.equal(await readDevtoolsEndpoint(dir, 300), undefined)
    setTimeout(() => void writeFile(join(dir, 'DevToolsActivePort'), '2345\n/devtools/browser/new\n'), 200)
    assert.equal(await readDevtoolsEndpoint(dir, 5000), 'ws://127.0.0.1:2345/devtools/browser/new')
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
})
