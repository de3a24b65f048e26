import { mkdtemp, rm } from 'node:fs/promises'
import { createServer as createNetServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { build, createServer, preview, type InlineConfig } from 'vite'
import { FIXTURES_DIR, REPO_ROOT } from '../testing/fixtures.ts'
import { serveFolder } from './serveFolder.ts'
import { freePort } from '../node-host/net/freePort.ts'

export type WebServer = {
  /** Origin with a trailing slash, e.g. `http://127.0.0.1:41234/`. */
  url: string
  close(): Promise<void>
}

/** `build`: `vite build` into a temporary folder, served by `vite preview` (what users get). `dev`: the dev server. */
export type WebServerMode = 'build' | 'dev'


/**
 * The browser tests' pages (`testing/pages/`, served by the app's Vite config) on 127.0.0.1 with the model fixtures under `/fixtures/` from the same origin
 * (Range requests answered with 206, as the Hugging Face Hub does). The dev server runs without
 * HMR: nothing may reload the page under a running test.
 */
export async function startWebServer(mode: WebServerMode = 'build'): Promise<WebServer> {
  const base: InlineConfig = {
    configFile: resolve(REPO_ROOT, 'testing/pages/vite.config.ts'),
    plugins: [serveFolder('/fixtures', FIXTURES_DIR)],
    clearScreen: false,
    logLevel: 'warn',
  }
  const port = await freePort()
  if (mode === 'dev') {
    const server = await createServer({ ...base, server: { host: '127.0.0.1', port, strictPort: true, hmr: false, watch: null } })
    await server.listen()
    return { url: localUrl(server.resolvedUrls), close: () => server.close() }
  }
  const outDir = await mkdtemp(join(tmpdir(), 'shardmesh-web-'))
  try {
    await build({ ...base, build: { outDir, emptyOutDir: true } })
    const server = await preview({ ...base, build: { outDir }, preview: { host: '127.0.0.1', port, strictPort: true } })
    return {
      url: localUrl(server.resolvedUrls),
      close: async () => {
        await server.close()
        await rm(outDir, { recursive: true, force: true })
      },
    }
  } catch (e) {
    await rm(outDir, { recursive: true, force: true })
    throw e
  }
}

function localUrl(urls: { local: string[] } | null): string {
  const url = urls?.local[0]
  if (!url) throw new Error('the Vite server reports no local URL')
  return url
}
