import { resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { defineConfig } from 'vite'
import { initialJsSizePlugin } from './node-host/app/initialJsSizePlugin.ts'

const root = fileURLToPath(new URL('.', import.meta.url))

/**
 * The contributor app: Vite root `web/` (`index.html`, React), static assets (the default model)
 * from `public/`, output in `dist/`. The browser tests' pages (`testing/pages/`) have their own
 * config beside them, built from this one.
 */
export default defineConfig({
  root: resolve(root, 'web'),
  publicDir: resolve(root, 'public'),
  // No SPA fallback (the app routes by hash): a missing model file must stay a 404, not index.html,
  // since the model reader probes for optional files (sharded index, tokenizer config).
  appType: 'mpa',
  // React's automatic JSX runtime through esbuild: no Babel plugin needed.
  esbuild: { jsx: 'automatic' },
  plugins: [initialJsSizePlugin({ html: 'web/index.html', budgetBytes: 300_000 })],
  build: {
    outDir: resolve(root, 'dist'),
    emptyOutDir: true,
    target: 'es2023',
    rollupOptions: {
      input: {
        index: resolve(root, 'web/index.html'),
      },
      onwarn(warning, warn) {
        // zod's sources carry `@__PURE__` comments Rollup cannot place: harmless, and not ours.
        if (warning.code === 'INVALID_ANNOTATION' && warning.id?.includes('/node_modules/')) return
        warn(warning)
      },
    },
  },
  // onnxruntime-web's bundle and the engine's imports use top-level await and dynamic import.
  worker: { format: 'es' },
  optimizeDeps: {
    // Pre-bundled, ORT would look for its .wasm beside the optimized chunk; the runtime sets its URL.
    exclude: ['onnxruntime-web'],
    // Found only through the worker, these would otherwise be optimized late and reload the page.
    include: ['onnx-proto', 'zod', 'react', 'react-dom/client'],
    entries: ['index.html', 'engine/engineWorker.ts'],
  },
  server: {
    host: '127.0.0.1',
    // `npm run dev` against `npm start`'s network: the page's /config.json and /oracle window come from it.
    proxy: { '/config.json': process.env.SHARDMESH_APP_URL ?? 'http://127.0.0.1:5173', '/oracle': process.env.SHARDMESH_APP_URL ?? 'http://127.0.0.1:5173' },
  },
  preview: { host: '127.0.0.1' },
})
