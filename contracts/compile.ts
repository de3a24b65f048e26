import { createHash } from 'node:crypto'
import { createRequire } from 'node:module'
import { mkdir, readdir, readFile, rename, writeFile } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { z } from 'zod'

/** The EVM version the contracts are compiled for: one every anvil (and post-2024 geth) runs. */
export const EVM_VERSION = 'cancun'

const CONTRACTS_DIR = dirname(fileURLToPath(import.meta.url))
/** solc-js's version (its package version is the compiler's); solc itself loads only on a cache miss (~0.5 s). */
const SOLC_VERSION: string = createRequire(import.meta.url)('solc/package.json').version
const DEFAULT_CACHE_DIR = join(CONTRACTS_DIR, '..', '.cache', 'contracts')

export type CompiledContract = {
  /** The JSON ABI as solc emits it. */
  abi: readonly unknown[]
  /** Creation code, 0x-prefixed. */
  bytecode: `0x${string}`
  /** Runtime code, 0x-prefixed (what anvil_setCode installs for the precompile stand-ins). */
  deployedBytecode: `0x${string}`
}

export type CompiledContracts = Record<string, CompiledContract>

export class ContractCompileError extends Error {
  readonly errors: string[]
  constructor(errors: string[]) {
    super(`solc failed to compile contracts/:\n${errors.join('\n')}`)
    this.name = 'ContractCompileError'
    this.errors = errors
  }
}

const outputSchema = z.object({
  errors: z.array(z.object({ severity: z.string(), formattedMessage: z.string() })).optional(),
  contracts: z
    .record(
      z.string(),
      z.record(
        z.string(),
        z.object({
          abi: z.array(z.unknown()),
          evm: z.object({ bytecode: z.object({ object: z.string() }), deployedBytecode: z.object({ object: z.string() }) }),
        }),
      ),
    )
    .optional(),
})

const cacheSchema = z.record(
  z.string(),
  z.object({ abi: z.array(z.unknown()), bytecode: z.string().regex(/^0x[0-9a-f]*$/), deployedBytecode: z.string().regex(/^0x[0-9a-f]*$/) }),
)

export type CompileContractsOptions = {
  /** Folder of `.sol` sources. @default this folder */
  dir?: string
  /** Where compiled output is cached, keyed by a hash of the sources, compiler and settings. @default .cache/contracts */
  cacheDir?: string
}

/**
 * Compiles every `.sol` file in `contracts/` with solc-js (standard JSON, optimizer on, EVM
 * `EVM_VERSION`), returning each contract by name. The result is cached on disk, so the second
 * call after a change costs one file read.
 */
export async function compileContracts(options: CompileContractsOptions = {}): Promise<CompiledContracts> {
  const dir = options.dir ?? CONTRACTS_DIR
  const cacheDir = options.cacheDir ?? DEFAULT_CACHE_DIR
  const files = (await readdir(dir)).filter((f) => f.endsWith('.sol')).sort()
  const sources: Record<string, { content: string }> = {}
  for (const f of files) sources[f] = { content: await readFile(join(dir, f), 'utf8') }
  const settings = {
    optimizer: { enabled: true, runs: 200 },
    evmVersion: EVM_VERSION,
    outputSelection: { '*': { '*': ['abi', 'evm.bytecode.object', 'evm.deployedBytecode.object'] } },
  }
  const input = { language: 'Solidity', sources, settings }
  const key = createHash('sha256').update(SOLC_VERSION).update(JSON.stringify(input)).digest('hex').slice(0, 32)
  const cacheFile = join(cacheDir, `${key}.json`)

  try {
    return cacheSchema.parse(JSON.parse(await readFile(cacheFile, 'utf8'))) as CompiledContracts
  } catch {
    // not cached yet (or unreadable): compile
  }

  const solc = (await import('solc')).default
  const output = outputSchema.parse(JSON.parse(solc.compile(JSON.stringify(input))))
  const errors = (output.errors ?? []).filter((e) => e.severity === 'error').map((e) => e.formattedMessage.trimEnd())
  if (errors.length > 0) throw new ContractCompileError(errors)

  const compiled: CompiledContracts = {}
  for (const [file, byName] of Object.entries(output.contracts ?? {})) {
    for (const [name, c] of Object.entries(byName)) {
      if (compiled[name]) throw new ContractCompileError([`contract name ${name} is defined twice (${file})`])
      compiled[name] = { abi: c.abi, bytecode: `0x${c.evm.bytecode.object}`, deployedBytecode: `0x${c.evm.deployedBytecode.object}` }
    }
  }
  await mkdir(cacheDir, { recursive: true })
  const tmp = `${cacheFile}.${process.pid}.tmp`
  await writeFile(tmp, JSON.stringify(compiled))
  await rename(tmp, cacheFile) // atomic: concurrent test processes never read half a file
  return compiled
}
