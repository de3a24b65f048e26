import { createHash } from 'node:crypto'
import { mkdir, open, readFile, readdir, rename, rm, stat, writeFile, type FileHandle } from 'node:fs/promises'
import { homedir } from 'node:os'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { z } from 'zod'
import type { ShardBuildKey, ShardGraphCache, ShardGraphWriter, StoredShard } from '../../shared/engine/shardGraphCache.ts'
import { EXTERNAL_DATA_FILE } from '../../shared/model/onnxGraph.ts'

export const MODEL_FILE = 'model.onnx'
const META_FILE = 'shard.json'
/** The graph builder's sources: a change to any of them changes every key, so no stale graph is opened. */
const BUILDER_DIR = resolve(dirname(fileURLToPath(import.meta.url)), '../../shared/model')

export type FileShardCacheInit = {
  /** @default SHARDMESH_CACHE_DIR, else $XDG_CACHE_HOME/shardmesh/shards, else ~/.cache/shardmesh/shards */
  dir?: string
}

/**
 * The cache the CLI and node hosts use: fileShardCache in defaultShardCacheDir, or none when
 * SHARDMESH_SHARD_CACHE=off (every load builds, as before the cache).
 */
export function shardCacheFromEnv(env: NodeJS.ProcessEnv = process.env): ShardGraphCache | undefined {
  return env.SHARDMESH_SHARD_CACHE === 'off' ? undefined : fileShardCache({ dir: defaultShardCacheDir(env) })
}

export function defaultShardCacheDir(env: NodeJS.ProcessEnv = process.env): string {
  if (env.SHARDMESH_CACHE_DIR) return resolve(env.SHARDMESH_CACHE_DIR)
  return join(env.XDG_CACHE_HOME || join(homedir(), '.cache'), 'shardmesh', 'shards')
}

const metaSchema = z.object({
  slot: z.string(),
  weightBytes: z.number().int().nonnegative(),
  range: z.object({ start: z.number().int().nonnegative(), end: z.number().int().positive() }),
  io: z.object({
    input: z.enum(['input_ids', 'hidden_states']),
    output: z.enum(['logits', 'hidden_states_out']),
    layers: z.array(z.number().int().nonnegative()),
    kvHeads: z.number().int().positive(),
    headDim: z.number().int().positive(),
    presentLayout: z.enum(['packed', 'appended']),
    kvType: z.enum(['float32', 'float16']).default('float32'),
  }),
})

let builderHash: Promise<string> | undefined
/** A hash of the graph builder's source files (a few dozen KB, read once per process). */
function hashBuilder(): Promise<string> {
  builderHash ??= (async () => {
    const h = createHash('sha256')
    for (const f of (await readdir(BUILDER_DIR)).filter((n) => n.endsWith('.ts') && !n.endsWith('.test.ts')).sort()) {
      h.update(f).update(await readFile(join(BUILDER_DIR, f)))
    }
    return h.digest('hex')
  })()
  return builderHash
}

/**
 * The checkpoint's identity: the path, size and modification time of its config and every
 * safetensors file (hashing gigabytes on every start would cost what the cache saves). Null for
 * sources that are not a local folder.
 */
async function checkpointIdentity(location: string): Promise<string | null> {
  const dir = resolve(location)
  const isDir = await stat(dir).then((s) => s.isDirectory(), () => false)
  if (!isDir || location.includes('://')) return null
  const files = (await readdir(dir)).filter((n) => n === 'config.json' || n.endsWith('.safetensors') || n === 'model.safetensors.index.json').sort()
  const parts = await Promise.all(files.map(async (n) => {
    const s = await stat(join(dir, n))
    return `${n}:${s.size}:${s.mtimeMs}`
  }))
  return `${dir}\n${parts.join('\n')}`
}

async function writeAll(file: FileHandle, chunks: Uint8Array[]): Promise<void> {
  for (const c of chunks) {
    let done = 0
    while (done < c.byteLength) done += (await file.write(c, done, c.byteLength - done)).bytesWritten
  }
}

/**
 * Built shard graphs in folders on disk, `<dir>/<key>/{model.onnx, weights.bin, shard.json}`:
 * the second load of a shard opens its files (seconds) instead of reading and building the
 * checkpoint (a minute for 1 B parameters). The weights file is the one copy that ONNX Runtime
 * reads; a new build for the same checkpoint folder, range and format replaces the older one.
 */
export function fileShardCache(init: FileShardCacheInit = {}): ShardGraphCache & { readonly dir: string } {
  const root = init.dir ?? defaultShardCacheDir()
  const keyOf = async (key: ShardBuildKey) => {
    const identity = await checkpointIdentity(key.source.location)
    if (identity === null) return null
    const { start, end } = key.range
    // The builder's folder is part of the slot: two checkouts of the project (different builder code)
    // keep a build each instead of replacing each other's while the other may be opening it.
    const slot = `${BUILDER_DIR}|${resolve(key.source.location)}|${start}-${end}|${key.weights}|${key.weights.startsWith('int4') ? key.int4AccuracyLevel : ''}`
    const hash = createHash('sha256').update(await hashBuilder()).update('\n').update(identity).update('\n').update(slot).digest('hex').slice(0, 32)
    return { slot, hash, name: `${key.source.name.replace(/[^\w.-]+/g, '_')}-${start}-${end}-${key.weights}-${hash}` }
  }
  const readMeta = async (dir: string) => {
    try {
      return metaSchema.parse(JSON.parse(await readFile(join(dir, META_FILE), 'utf8')))
    } catch {
      return null
    }
  }
  return {
    dir: root,
    async get(key) {
      const k = await keyOf(key)
      if (!k) return null
      const dir = join(root, k.name)
      const meta = await readMeta(dir)
      if (!meta || meta.slot !== k.slot) return null
      // A weights file cut short (disk full, a crash) is rebuilt, not opened.
      const size = await stat(join(dir, EXTERNAL_DATA_FILE)).then((s) => s.size, () => -1)
      const model = await stat(join(dir, MODEL_FILE)).then(() => true, () => false)
      if (size !== meta.weightBytes || !model) return null
      return { io: meta.io, range: meta.range, location: dir, weightBytes: meta.weightBytes }
    },
    async create(key) {
      const k = await keyOf(key)
      if (!k) return null
      await mkdir(root, { recursive: true })
      // Written beside the final folder and renamed into place at the end: a reader never sees half a shard.
      const tmp = join(root, `.${k.name}.${process.pid}.${Date.now()}`)
      await mkdir(tmp)
      const file = await open(join(tmp, EXTERNAL_DATA_FILE), 'w')
      let closed = false
      const close = async () => {
        if (!closed) await file.close()
        closed = true
      }
      const writer: ShardGraphWriter = {
        writeWeights: (chunks) => writeAll(file, chunks),
        async finish(graph): Promise<StoredShard> {
          await writeAll(file, graph.weights)
          await close()
          await writeFile(join(tmp, MODEL_FILE), graph.model)
          const meta = { slot: k.slot, weightBytes: graph.weightBytes, range: graph.range, io: graph.io }
          await writeFile(join(tmp, META_FILE), JSON.stringify(meta))
          const dir = join(root, k.name)
          // Older builds of the same slot (the checkpoint or the builder changed) would only take disk space.
          for (const n of await readdir(root)) {
            if (n.startsWith('.') || n === k.name) continue
            if ((await readMeta(join(root, n)))?.slot === k.slot) await rm(join(root, n), { recursive: true, force: true })
          }
          await rm(dir, { recursive: true, force: true })
          try {
            await rename(tmp, dir)
          } catch (e) {
            // Another process stored the same shard in between: use its copy.
            await rm(tmp, { recursive: true, force: true })
            if ((await readMeta(dir))?.slot !== k.slot) throw e
          }
          return { io: graph.io, range: graph.range, location: dir, weightBytes: graph.weightBytes }
        },
        async abort() {
          await close().catch(() => undefined)
          await rm(tmp, { recursive: true, force: true })
        },
      }
      return writer
    },
  }
}
