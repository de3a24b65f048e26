#!/usr/bin/env node
// Entry of `npx shardmesh`. The CLI is TypeScript run by Node's type stripping (Node >= 22.18 / 23.6);
// on an older Node, re-run under the Node 24 that `npm install` put in node_modules.
import { spawnSync } from 'node:child_process'
import { existsSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..')
const main = join(root, 'node-host', 'cli', 'main.ts')

if (process.features.typescript) {
  await import(pathToFileURL(main).href)
} else {
  const candidates = [join(root, 'node_modules', 'node', 'bin', 'node'), join(root, 'node_modules', '.bin', 'node')]
  const node = candidates.find((c) => existsSync(c))
  if (!node) {
    process.stderr.write(`shardmesh needs Node >= 22.18 (this is ${process.version}); run npm install to get the bundled Node 24\n`)
    process.exit(1)
  }
  const child = spawnSync(node, [main, ...process.argv.slice(2)], { stdio: 'inherit' })
  process.exit(child.status ?? 1)
}
