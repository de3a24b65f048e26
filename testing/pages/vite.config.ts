import { resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { defineConfig, type UserConfig } from 'vite'
import app from '../../vite.config.ts'

const here = fileURLToPath(new URL('.', import.meta.url))
const appConfig = app as UserConfig

/**
 * The browser tests' pages (engine test page, mesh peer page): the app's Vite config with this
 * folder as its root, so the pages are served and built for the e2e tests only, never shipped
 * with the app. They import the page code from `web/` as the app does.
 */
export default defineConfig({
  ...appConfig,
  root: here,
  // The app's initial-size budget checks web/index.html, which is not built here.
  plugins: [],
  build: {
    ...appConfig.build,
    rollupOptions: {
      ...appConfig.build?.rollupOptions,
      input: {
        'engine-test': resolve(here, 'engine-test.html'),
        'mesh-peer': resolve(here, 'mesh-peer.html'),
      },
    },
  },
  optimizeDeps: {
    ...appConfig.optimizeDeps,
    entries: ['engine-test.html', 'mesh-peer.html', '../../web/engine/engineWorker.ts'],
  },
})
