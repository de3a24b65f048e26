import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { after, test } from 'node:test'
import { fileURLToPath } from 'node:url'
import { createPublicClient, http, parseEther } from 'viem'
import { generatePrivateKey, privateKeyToAddress } from 'viem/accounts'
import { devnetChainConfig } from '../../shared/chain/chainConfig.ts'
import { UsageError } from '../cli/usageError.ts'
import { parseDevnetArgs } from './devnetCommand.ts'
import { readDevnetFile } from './devnetFile.ts'

const MAIN = fileURLToPath(new URL('../cli/main.ts', import.meta.url))
const dirs: string[] = []
after(() => Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true }))))

test('devnet flags: defaults, validation', () => {
  const o = parseDevnetArgs([])
  assert.equal(o.json, false)
  assert.equal(o.blockTime, 1)
  assert.equal(o.blocksPerEpoch, 60)
  assert.match(o.out, /\.cache[/\\]devnet\.json$/)
  assert.throws(() => parseDevnetArgs(['--port', 'x']), UsageError)
  assert.throws(() => parseDevnetArgs(['--fund', '0x12']), /--fund: "0x12" is not an address/)
  assert.throws(() => parseDevnetArgs(['extra']), UsageError)
})

test('shardmesh devnet --json: one JSON object, the addresses file, a funded wallet, a clean stop on SIGTERM', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'shardmesh-devnet-'))
  dirs.push(dir)
  const out = join(dir, 'devnet.json')
  const wallet = privateKeyToAddress(generatePrivateKey())
  const child = spawn(process.execPath, [MAIN, 'devnet', '--json', '--out', out, '--fund', wallet, '--block-time', '0'], { stdio: ['ignore', 'pipe', 'inherit'] })
  try {
    const [line] = (await once(createInterface({ input: child.stdout! }), 'line')) as [string]
    const summary = JSON.parse(line)
    const file = await readDevnetFile(out)
    assert.equal(summary.rpcUrl, file.rpcUrl)
    assert.equal(summary.chainId, file.chainId)
    assert.deepEqual(summary.contracts, file.contracts)
    assert.deepEqual(summary.precompiles, file.precompiles)
    assert.equal(summary.addressesFile, out)
    const client = createPublicClient({ transport: http(file.rpcUrl) })
    assert.equal(await client.getChainId(), file.chainId)
    assert.equal(await client.getBalance({ address: wallet }), parseEther('100'))
    const config = devnetChainConfig(file)
    for (const address of [config.contracts.agentRegistry, config.contracts.rewardPool, config.precompiles.verifyInference]) assert.ok((await client.getCode({ address }))?.length)
    child.kill('SIGTERM')
    const [code] = await once(child, 'exit')
    assert.equal(code, 0)
    await assert.rejects(client.getChainId()) // anvil went with it
  } finally {
    child.kill('SIGKILL')
  }
})
