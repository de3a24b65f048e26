import { chmod, mkdtemp, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { NVIDIA_SMI_QUERY } from '../node-host/agent/gpuTelemetry.ts'
import { NVIDIA_SMI_HARDWARE_QUERY } from '../node-host/agent/hardwareProfile.ts'

/**
 * An `nvidia-smi` executable for tests: asked NVIDIA_SMI_QUERY or NVIDIA_SMI_HARDWARE_QUERY it
 * prints the CSV last set for it; anything else fails as the real one does on a bad query. A test
 * drives the poller through the real process boundary. Put `dir` first on PATH.
 */
export async function createFakeNvidiaSmi(): Promise<{ dir: string; binary: string; setOutput(csv: string): Promise<void>; setHardwareOutput(csv: string): Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), 'fake-nvidia-smi-'))
  const binary = join(dir, 'nvidia-smi')
  const output = join(dir, 'output.csv')
  const hardware = join(dir, 'hardware.csv')
  await writeFile(output, '')
  await writeFile(hardware, '')
  await writeFile(
    binary,
    [
      '#!/bin/sh',
      `if [ $# -eq 2 ] && [ "$1" = '${NVIDIA_SMI_QUERY[0]}' ] && [ "$2" = '${NVIDIA_SMI_QUERY[1]}' ]; then cat '${output}'; exit 0; fi`,
      `if [ $# -eq 2 ] && [ "$1" = '${NVIDIA_SMI_HARDWARE_QUERY[0]}' ] && [ "$2" = '${NVIDIA_SMI_HARDWARE_QUERY[1]}' ]; then cat '${hardware}'; exit 0; fi`,
      'echo "Invalid combination of input arguments." >&2',
      'exit 2',
      '',
    ].join('\n'),
  )
  await chmod(binary, 0o755)
  return { dir, binary, setOutput: (csv) => writeFile(output, csv), setHardwareOutput: (csv) => writeFile(hardware, csv) }
}
