import assert from 'node:assert/strict'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, test } from 'node:test'
import { generatePrivateKey, privateKeyToAccount } from 'viem/accounts'
import { silentLogger } from '../shared/logger.ts'
import { freePort } from '../node-host/net/freePort.ts'
import { createOracleCore, type OracleCore } from '../node-host/oracle/createOracleCore.ts'
import { createOracleServer, type OracleServer } from '../node-host/oracle/createOracleServer.ts'
import { readModelInfo } from '../node-host/oracle/modelInfo.ts'
import type { OracleStore } from '../node-host/oracle/store/oracleStore.ts'
import { createSqliteOracleStore } from '../node-host/oracle/store/sqliteOracleStore.ts'
import { createPlumiseClient } from '../node-host/plumise/plumiseClient.ts'
import { REPO_ROOT } from '../testing/fixtures.ts'
import { spawnCli, waitFor, type CliProcess } from './cliProcess.ts'

/** `shardmesh start --plumise` configured only by the upstream agent's environment names. */
describe('shardmesh start --plumise', () => {
  let dir: string
  let store: OracleStore
  let core: OracleCore
  let oracle: OracleServer
  let agent: CliProcess

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'plumise-start-'))
    store = createSqliteOracleStore({ path: join(dir, 'oracle.db') })
    core = await createOracleCore({ store, models: [await readModelInfo(undefined)], logger: silentLogger, replicas: 1 })
    oracle = await createOracleServer({ core, store, port: 0, logger: silentLogger })
  })
  after(async () => {
    agent?.child.kill('SIGKILL')
    await oracle.close()
    await core.close()
    await store.close()
    await rm(dir, { recursive: true, force: true })
  })

  test('registers with the Oracle, serves its range over gRPC on GRPC_PORT and reports ready', async () => {
    const [grpcPort, apiPort] = [await freePort(), await freePort()]
    const key = generatePrivateKey()
    const address = privateKeyToAccount(key).address
    agent = spawnCli(['start', '--plumise', '--device', 'cpu', '--listen', '/ip4/127.0.0.1/tcp/0', '--identity', join(dir, 'id.key')], {
      ORACLE_API_URL: oracle.url,
      PLUMISE_PRIVATE_KEY: key,
      GRPC_PORT: String(grpcPort),
      API_PORT: String(apiPort),
      MODEL_NAME: join(REPO_ROOT, 'public', 'models', 'docs-llama-7m'),
      // no chain in this test: the chain agent logs its failures and goes on
      PLUMISE_RPC_URL: 'http://127.0.0.1:1',
    })
    const logs = () => agent.log.join('')
    const client = createPlumiseClient(`http://127.0.0.1:${grpcPort}`)
    try {
      const ping = await waitFor('the agent serving over gRPC', async () => {
        const p = await client.ping()
        return p.isReady ? p : undefined
      }, 60_000, logs)
      assert.equal(ping.agentAddress, address)
      assert.deepEqual([ping.layerStart, ping.layerEnd], [0, 8])
      const topo = (await (await fetch(`${oracle.url}/api/v1/pipeline/topology?model=docs-llama-7m`)).json()) as { nodes: { nodeAddress: string; grpcEndpoint: string; httpEndpoint: string; ready: boolean }[] }
      const node = topo.nodes.find((n) => n.nodeAddress.toLowerCase() === address.toLowerCase())!
      assert.equal(node.grpcEndpoint, `http://127.0.0.1:${grpcPort}`)
      assert.equal(node.httpEndpoint, `http://127.0.0.1:${apiPort}`)
      await waitFor('ready in the topology', async () => ((await (await fetch(`${oracle.url}/api/v1/pipeline/topology?model=docs-llama-7m`)).json()) as typeof topo).nodes.some((n) => n.ready) || undefined, 30_000, logs)
      // the agent HTTP API on API_PORT, reporting the Plumise pipeline with its real endpoints
      const health = (await (await fetch(`http://127.0.0.1:${apiPort}/health`)).json()) as { status: string }
      assert.equal(health.status, 'ok')
      const status = await waitFor('pipeline status with the topology', async () => {
        const s = (await (await fetch(`http://127.0.0.1:${apiPort}/api/v1/pipeline/status`)).json()) as { topology: { nodes: { address: string; grpcEndpoint: string; httpEndpoint: string; ready: boolean }[] } | null }
        return s.topology?.nodes.some((n) => n.ready) ? s : undefined
      }, 60_000, logs)
      assert.deepEqual(status.topology!.nodes.map((n) => [n.address.toLowerCase(), n.grpcEndpoint, n.httpEndpoint, n.ready]), [[address.toLowerCase(), `http://127.0.0.1:${grpcPort}`, `http://127.0.0.1:${apiPort}`, true]])
    } finally {
      client.close()
    }
  })
})
