import { chmod, mkdtemp, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { NVIDIA_SMI_QUERY } from '../agent/gpuTelemetry.ts'

/**
 * An `nvidia-smi` executable for tests: it checks that it was asked NVIDIA_SMI_QUERY (else it
 * fails as the real one does on a bad query) and prints whatever CSV was last set, so a test
 * drives the poller through the real process boundary. Put `dir` first on PATH.
 */
export async function createFakeNvidiaSmi(): Promise<{ dir: string; binary: string; setOutput(csv: string): Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), 'fake-nvidia-smi-'))
  const binary = join(dir, 'nvidia-smi')
  const output = join(dir, 'output.csv')
  await writeFile(output, '')
  await writeFile(
    binary,
    `#!/bin/sh\nif [ "$1" != '${NVIDIA_SMI_QUERY[0]}' ] || [ "$2" != '${NVIDIA_SMI_QUERY[1]}' ] || [ $# -ne 2 ]; then echo "Invalid combination of input arguments." >&2; exit 2; fi\ncat '${output}'\n`,
  )
  await chmod(binary, 0o755)
  return { dir, binary, setOutput: (csv) => writeFile(output, csv) }
}
