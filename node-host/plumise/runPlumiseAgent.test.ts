import assert from 'node:assert/strict'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, test } from 'node:test'
import { generatePrivateKey, privateKeyToAccount } from 'viem/accounts'
import { silentLogger } from '../../shared/logger.ts'
import { createPlumiseOracleClient } from '../../shared/oracle/plumiseOracleClient.ts'
import { createNodeHost, type NodeHost } from '../host/createNodeHost.ts'
import { createLogger } from '../logger.ts'
import { createNodeLibp2p } from '../mesh/createNodeLibp2p.ts'
import { fileModelSource } from '../model/fileModelSource.ts'
import { createOracleCore, type OracleCore } from '../oracle/createOracleCore.ts'
import { createOracleServer, type OracleServer } from '../oracle/createOracleServer.ts'
import { readModelInfo } from '../oracle/modelInfo.ts'
import type { OracleStore } from '../oracle/store/oracleStore.ts'
import { createSqliteOracleStore } from '../oracle/store/sqliteOracleStore.ts'
import { loadFixture, type Fixture } from '../../testing/fixtures.ts'
import { createPlumiseClient } from './plumiseClient.ts'
import { runPlumiseAgent, type PlumiseAgent } from './runPlumiseAgent.ts'

describe('Plumise mode: hosts register with an Oracle over HTTP and chain over gRPC', () => {
  let dir: string
  let store: OracleStore
  let core: OracleCore
  let oracle: OracleServer
  let fixture: Fixture
  const hosts: NodeHost[] = []
  const agents: PlumiseAgent[] = []

  before(async () => {
    fixture = await loadFixture('docs-llama-7m')
    dir = await mkdtemp(join(tmpdir(), 'plumise-agent-'))
    store = createSqliteOracleStore({ path: join(dir, 'oracle.db') })
    core = await createOracleCore({ store, models: [await readModelInfo(undefined)], logger: silentLogger, replicas: 1 })
    oracle = await createOracleServer({ core, store, port: 0, logger: silentLogger })
  })
  after(async () => {
    for (const a of agents) await a.stop()
    for (const h of hosts) await h.stop()
    await oracle.close()
    await core.close()
    await store.close()
    await rm(dir, { recursive: true, force: true })
  })

  test('three agents get ranges covering the model, find their next nodes, and a stream gives the reference tokens', async () => {
    const oracleUrl = oracle.url
    const source = fileModelSource(fixture.dir)
    for (let i = 0; i < 3; i++) {
      const node = await createNodeLibp2p({ privateKey: await generateKeyPair('Ed25519') })
      const host = await createNodeHost({ node, source, device: 'cpu', weights: 'float32', bootstrap: [], logger: createLogger('test', 'silent') })
      hosts.push(host)
      const account = privateKeyToAccount(generatePrivateKey())
      agents.push(
        await runPlumiseAgent({
          oracle: createPlumiseOracleClient({ baseUrl: oracleUrl, account }),
          oracleUrl,
          host,
          source,
          grpcPort: 0,
          bindHost: '127.0.0.1',
          advertiseHost: '127.0.0.1',
          apiPort: 31331 + i,
          ramMb: 6, // a third of the model's weights each: the Oracle must split it three ways
          vramMb: 0,
          device: 'cpu',
          pollMs: 200,
          peer: { peerId: node.peerId.toString(), multiaddrs: node.getMultiaddrs().map(String) },
          logger: silentLogger,
        }),
      )
    }
    // wait until the ranges the Oracle settled on are served and each agent knows the chain after it
    const deadline = Date.now() + 60_000
    const settled = () => {
      const ranges = agents.map((a) => a.range()).filter((r) => r !== undefined).sort((a, b) => a.start - b.start)
      let at = 0
      for (const r of ranges) if (r.start === at) at = r.end
      return at === 8
    }
    while (!settled() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 200))
    assert.ok(settled(), `ranges: ${JSON.stringify(agents.map((a) => a.range()))}`)
    for (const a of agents) await a.refresh()
    const first = agents.find((a) => a.range()?.start === 0)!
    // every agent got a non-empty range (no standby), and the first one's chain walks the other two
    assert.ok(agents.every((a) => a.range() !== undefined && a.range()!.end > a.range()!.start))
    assert.equal(first.chain().length, 2)

    const client = createPlumiseClient(first.grpcEndpoint)
    try {
      const info = await client.ping()
      assert.equal(info.agentAddress.length, 42)
      const p = fixture.prompts[0]!
      const ids: number[] = []
      for await (const c of client.forwardPassStream({ requestId: 'mode', dtype: 'bfloat16', params: { doSample: false, repetitionPenalty: 1, maxNewTokens: 8 }, metadata: { originalPrompt: p.prompt } })) {
        assert.ok(!c.finishReason.startsWith('error'), c.finishReason)
        if (!c.isFinished) ids.push(c.tokenId)
      }
      assert.deepEqual(ids, p.greedy_new_ids.slice(0, 8))
    } finally {
      client.close()
    }
  })
})
