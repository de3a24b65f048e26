import { open, readFile, stat } from 'node:fs/promises'
import { basename, join, resolve } from 'node:path'
import { ModelFileNotFoundError, TruncatedFileError, type ModelSource } from '../../shared/model/modelSource.ts'

/** A checkpoint in a local folder; reads only the byte ranges asked for. */
export function fileModelSource(dir: string, name = basename(resolve(dir))): ModelSource {
  const root = resolve(dir)
  const path = (file: string) => join(root, file)
  const missing = (e: unknown, file: string) =>
    (e as NodeJS.ErrnoException).code === 'ENOENT' ? new ModelFileNotFoundError(file, root) : e
  return {
    name,
    location: root,
    async readText(file) {
      try {
        return await readFile(path(file), 'utf8')
      } catch (e) {
        throw missing(e, file)
      }
    },
    async readRange(file, start, end) {
      let handle
      try {
        handle = await open(path(file), 'r')
      } catch (e) {
        throw missing(e, file)
      }
      try {
        const out = new Uint8Array(end - start)
        let done = 0
        while (done < out.length) {
          const { bytesRead } = await handle.read(out, done, Math.min(out.length - done, 1 << 30), start + done)
          if (bytesRead === 0) throw new TruncatedFileError(file, end, start + done)
          done += bytesRead
        }
        return out
      } finally {
        await handle.close()
      }
    },
    async has(file) {
      return stat(path(file)).then(() => true, () => false)
    },
  }
}
