import { createHash } from 'node:crypto'
import { mkdir, readdir, rename, rm, stat } from 'node:fs/promises'
import { join, relative } from 'node:path'
import { REPO_ROOT } from '../../testing/fixtures.ts'

/** What the app's bundle is made from: a change to any of these makes a new build. */
const SOURCES = ['web', 'shared', 'public', 'proto', 'vite.config.ts', 'package-lock.json', 'node-host/app/initialJsSizePlugin.ts']

export type BuildAppOptions = {
  /** Where built apps are kept, one folder per source fingerprint. @default `<repo>/.cache/app` */
  cacheDir?: string
  /** Told when a build starts (not on a cache hit). */
  onBuild?: (fingerprint: string) => void
}

/** Path, size and mtime of every source file: cheap to take, and changes whenever a source does. */
export async function sourceFingerprint(sources: string[] = SOURCES, base: string = REPO_ROOT): Promise<string> {
  const hash = createHash('sha256')
  const walk = async (path: string): Promise<void> => {
    const s = await stat(path).catch(() => undefined)
    if (!s) return
    if (s.isDirectory()) {
      for (const name of (await readdir(path)).sort()) if (name !== 'node_modules' && !name.startsWith('.')) await walk(join(path, name))
    } else if (!path.endsWith('.test.ts')) {
      hash.update(`${relative(base, path)}\0${s.size}\0${s.mtimeMs}\n`)
    }
  }
  for (const s of sources) await walk(join(base, s))
  return hash.digest('hex').slice(0, 16)
}

/**
 * The contributor app built with Vite, once per source fingerprint: a second call (another
 * `npm start`) with nothing changed returns the cached folder at once. Builds go to a temporary
 * folder first, so a build cut short is never served.
 */
export async function buildApp(options: BuildAppOptions = {}): Promise<string> {
  const cacheDir = options.cacheDir ?? join(REPO_ROOT, '.cache', 'app')
  const fingerprint = await sourceFingerprint()
  const outDir = join(cacheDir, fingerprint)
  if (await stat(join(outDir, 'index.html')).catch(() => undefined)) return outDir
  options.onBuild?.(fingerprint)
  await mkdir(cacheDir, { recursive: true })
  const tmp = `${outDir}.${process.pid}.tmp`
  // Vite is large: loaded only when a build is needed.
  const { build } = await import('vite')
  try {
    await build({ configFile: join(REPO_ROOT, 'vite.config.ts'), logLevel: 'warn', clearScreen: false, build: { outDir: tmp, emptyOutDir: true } })
    await rm(outDir, { recursive: true, force: true })
    await rename(tmp, outDir)
  } finally {
    await rm(tmp, { recursive: true, force: true })
  }
  // Older builds are dropped: only the current one is ever served.
  for (const name of await readdir(cacheDir)) if (name !== fingerprint && !name.endsWith('.tmp')) await rm(join(cacheDir, name), { recursive: true, force: true })
  return outDir
}
