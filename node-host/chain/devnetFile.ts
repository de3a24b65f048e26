import { mkdir, readFile, rename, writeFile } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { devnetFileSchema, type DevnetFile } from '../../shared/chain/chainConfig.ts'

/** Where `npm start` and `shardmesh devnet` write the devnet's addresses unless told otherwise. */
export const DEFAULT_DEVNET_FILE = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '.cache', 'devnet.json')

export async function writeDevnetFile(path: string, file: DevnetFile): Promise<void> {
  await mkdir(dirname(path), { recursive: true })
  const tmp = `${path}.${process.pid}.tmp`
  await writeFile(tmp, JSON.stringify(file, null, 2) + '\n')
  await rename(tmp, path) // readers never see half a file
}

/** Reads and validates an addresses file (throws with the path and the first problem). */
export async function readDevnetFile(path: string = DEFAULT_DEVNET_FILE): Promise<DevnetFile> {
  let json: unknown
  try {
    json = JSON.parse(await readFile(path, 'utf8'))
  } catch (e) {
    throw new Error(`devnet addresses file ${path} is unreadable (start one with \`npx shardmesh devnet\`): ${(e as Error).message}`)
  }
  const parsed = devnetFileSchema.safeParse(json)
  if (!parsed.success) throw new Error(`devnet addresses file ${path} is invalid: ${parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`)
  return parsed.data
}
