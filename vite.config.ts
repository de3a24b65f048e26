import { resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { defineConfig } from 'vite'

const root = fileURLToPath(new URL('.', import.meta.url))

/** The web app: Vite root `web/`, static assets (the default model) from `public/`, output in `dist/`. */
export default defineConfig({
  root: resolve(root, 'web'),
  publicDir: resolve(root, 'public'),
  build: {
    outDir: resolve(root, 'dist'),
    emptyOutDir: true,
    target: 'es2023',
    rollupOptions: {
      input: { 'engine-test': resolve(root, 'web/engine-test.html'), 'mesh-peer': resolve(root, 'web/mesh-peer.html') },
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
    include: ['onnx-proto', 'zod'],
    entries: ['engine-test.html', 'mesh-peer.html', 'engine/engineWorker.ts'],
  },
  server: { host: '127.0.0.1' },
  preview: { host: '127.0.0.1' },
})
