import assert from 'node:assert/strict'
import { createServer } from 'node:http'
import { test } from 'node:test'
import { createPublicClient, http } from 'viem'
import { getBalance } from 'viem/actions'
import { chainHttp } from './chainHttp.ts'

// anvil's answer to a read at "latest" that raced the next block under --prune-history (recorded from anvil 1.7.1).
const PRUNED = { jsonrpc: '2.0', id: 0, error: { code: -32602, message: 'BlockOutOfRangeError: block height is 15 but requested was 14' } }

test('a read refused as BlockOutOfRangeError is asked again; other errors pass through at once', async () => {
  let calls = 0
  let refuse = 1
  const server = createServer((req, res) => {
    let body = ''
    req.on('data', (c: Buffer) => (body += c))
    req.on('end', () => {
      calls++
      const { id, method } = JSON.parse(body) as { id: number; method: string }
      res.setHeader('content-type', 'application/json')
      if (method === 'eth_chainId') return res.end(JSON.stringify({ jsonrpc: '2.0', id, result: '0x7a69' }))
      if (method === 'eth_getCode') return res.end(JSON.stringify({ jsonrpc: '2.0', id, error: { code: -32602, message: 'invalid address' } }))
      if (refuse-- > 0) return res.end(JSON.stringify({ ...PRUNED, id }))
      res.end(JSON.stringify({ jsonrpc: '2.0', id, result: '0x2a' }))
    })
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  const url = `http://127.0.0.1:${(server.address() as { port: number }).port}`
  try {
    const address = '0x70997970C51812dc3A010C7d01b50e0d17dc79C8'
    const wrapped = createPublicClient({ transport: chainHttp(url, { retryCount: 0 }) })
    assert.equal(await getBalance(wrapped, { address }), 42n)
    assert.equal(calls, 2)
    // viem's own http transport does not retry it: the caller would see the refusal
    refuse = 1
    await assert.rejects(getBalance(createPublicClient({ transport: http(url, { retryCount: 0 }) }), { address }), /BlockOutOfRangeError/)
    // another error is not retried
    calls = 0
    await assert.rejects(wrapped.request({ method: 'eth_getCode', params: [address, 'latest'] }), /invalid address/)
    assert.equal(calls, 1)
    // a refusal that persists comes back after three tries
    calls = 0
    refuse = 10
    await assert.rejects(getBalance(wrapped, { address }), /BlockOutOfRangeError/)
    assert.equal(calls, 3)
  } finally {
    server.close()
  }
})
