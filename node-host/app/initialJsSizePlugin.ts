import { gzipSync } from 'node:zlib'
import type { Plugin } from 'vite'

type ChunkLike = { type: 'chunk'; fileName: string; code: string; imports: string[]; facadeModuleId: string | null; isEntry: boolean }
type AssetLike = { type: 'asset'; fileName: string }

/** Bytes of JS a page loads before it runs: its entry chunk and every chunk that one imports statically. */
export function initialJsBytes(bundle: Record<string, ChunkLike | AssetLike>, entry: ChunkLike): { raw: number; gzip: number; files: string[] } {
  const seen = new Set<string>()
  const visit = (name: string) => {
    if (seen.has(name)) return
    const c = bundle[name]
    if (!c || c.type !== 'chunk') return
    seen.add(name)
    for (const i of c.imports) visit(i)
  }
  visit(entry.fileName)
  let raw = 0
  let gzip = 0
  for (const name of seen) {
    const code = (bundle[name] as ChunkLike).code
    raw += Buffer.byteLength(code)
    gzip += gzipSync(code, { level: 9 }).length
  }
  return { raw, gzip, files: [...seen] }
}

/**
 * Prints the app's initial JavaScript (gzipped) after each build and fails the build past the
 * budget: what a contributor downloads before the landing view shows. Lazy chunks (libp2p, the
 * engine worker, onnxruntime-web and its wasm) are not counted.
 */
export function initialJsSizePlugin(options: { html: string; budgetBytes: number }): Plugin {
  return {
    name: 'shardmesh:initial-js-size',
    apply: 'build',
    generateBundle(_options, bundle) {
      const chunks = bundle as unknown as Record<string, ChunkLike | AssetLike>
      const entry = Object.values(chunks).find((c): c is ChunkLike => c.type === 'chunk' && c.isEntry && (c.facadeModuleId ?? '').endsWith(options.html))
      if (!entry) return
      const size = initialJsBytes(chunks, entry)
      const kb = (n: number) => `${(n / 1000).toFixed(1)} kB`
      const line = `app initial JS: ${kb(size.gzip)} gzipped (${kb(size.raw)} raw, ${size.files.length} files; budget ${kb(options.budgetBytes)})`
      process.stdout.write(`${line}\n`)
      if (size.gzip > options.budgetBytes) this.error(`${line}: over budget`)
    },
  }
}
