import assert from 'node:assert/strict'
import { after, before, describe, test } from 'node:test'
import { chromium, type Browser, type Page } from 'playwright-core'
import { createPublicClient, createWalletClient, defineChain, encodeFunctionData, http, numberToHex, parseEther, parseEventLogs, type Chain, type Hex } from 'viem'
import { generatePrivateKey, privateKeyToAccount } from 'viem/accounts'
import { getBalance, getTransactionReceipt, readContract } from 'viem/actions'
import { rewardPoolAbi } from '../shared/chain/abis.ts'
import { nodeIdFromPeerId, verifyAgentBinding } from '../shared/chain/agentBinding.ts'
import { chainHttp } from '../shared/chain/chainHttp.ts'
import { ChainActionError } from '../shared/chain/errors.ts'
import { getAgent } from '../shared/chain/getAgent.ts'
import { getPendingReward } from '../shared/chain/getPendingReward.ts'
import { predictEpochRewards } from '../shared/chain/predictEpochRewards.ts'
import { reportContributions } from '../shared/chain/reportContributions.ts'
import { contributionFromMetrics } from '../shared/chain/rewardFormula.ts'
import { transact, type ChainClient } from '../shared/chain/transact.ts'
import { SERVED_PATH, servedSnapshotSchema } from '../shared/oracle/servedThroughput.ts'
import { pageChainOf } from '../web/wallet/pageChain.ts'
import { CHROMIUM_PATH, MESH_PAGE_ARGS } from './launchChromium.ts'
import { startAppNetwork, type AppNetwork } from './startAppNetwork.ts'
import { installTestWallet, type TestWallet } from './testWallet.ts'

// The Wallet view against ONE real `npm start` network (devnet, Oracle, one host), started once for
// the file, with an injected wallet of the test's own (e2e/testWallet.ts: EIP-6963 in the page,
// the key in Node). The epoch is closed within the test: the pool's owner (anvil's account 0, the
// devnet's deployer) lends the oracle role to a key of the test for one report, then gives it back.

const DEPLOYER_KEY: Hex = '0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80' // anvil's well-known account 0

describe('the Wallet view on an npm start network', () => {
  let net: AppNetwork
  let browser: Browser
  let page: Page
  let wallet: TestWallet
  let chain: Chain
  let reader: ChainClient
  const pageErrors: string[] = []

  before(async () => {
    net = await startAppNetwork({ hosts: 1 })
    const c = net.config.chain
    assert.ok(c, 'the network has a chain')
    chain = defineChain({ id: c.id, name: 'devnet', nativeCurrency: { name: 'Ether', symbol: 'ETH', decimals: 18 }, rpcUrls: { default: { http: [c.rpcUrl] } } })
    reader = createPublicClient({ chain, transport: chainHttp(c.rpcUrl), pollingInterval: 100 }) as ChainClient
    browser = await chromium.launch({ executablePath: CHROMIUM_PATH, args: MESH_PAGE_ARGS })
    page = await (await browser.newContext()).newPage()
    page.on('pageerror', (e) => pageErrors.push(e.message))
    if (process.env.DEBUG_APP) page.on('console', (m) => console.log(`[page] ${m.text()}`))
    const key = generatePrivateKey()
    // a fresh wallet with 10 ETH on the devnet (anvil_setBalance)
    await fetch(c.rpcUrl, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'anvil_setBalance', params: [privateKeyToAccount(key).address, numberToHex(parseEther('10'))] }) })
    wallet = await installTestWallet(page, { privateKey: key, name: 'Test Wallet' })
  })

  after(async () => {
    await browser?.close()
    await net?.stop()
  })

  test('reading works without a wallet: any address is looked up', async () => {
    await page.goto(`${net.appUrl}#wallet`)
    await page.getByRole('button', { name: 'Connect wallet' }).waitFor({ timeout: 60_000 })
    await page.getByLabel('Look up an address').fill(wallet.address)
    await page.getByTestId('pending').waitFor({ timeout: 30_000 })
    assert.equal(await page.getByTestId('pending').getAttribute('data-wei'), '0')
    const epoch = await readContract(reader, { address: pageChainOf(net.config.chain!).config.contracts.rewardPool, abi: rewardPoolAbi, functionName: 'getCurrentEpoch' })
    assert.match((await page.getByTestId('epoch').textContent()) ?? '', new RegExp(`^(${epoch}|${epoch + 1n}) — ends at block \\d+`))
    await page.getByLabel('Look up an address').fill('')
  })

  test('Connect wallet lists the EIP-6963 wallet by name and icon; on the wrong chain it switches, adding the chain from /config.json', async () => {
    await page.getByRole('button', { name: 'Connect wallet' }).click()
    const entry = page.getByRole('listitem').filter({ hasText: 'Test Wallet' })
    await entry.waitFor()
    assert.match((await entry.locator('img').getAttribute('src')) ?? '', /^data:image\/svg\+xml,/)
    await entry.click()
    await page.getByTestId('account').waitFor()
    assert.equal(await page.getByTestId('account').textContent(), wallet.address)
    assert.match((await page.getByTestId('chain').textContent()) ?? '', /^1 — the network rewards on/)
    await page.getByRole('button', { name: /^Switch to / }).click()
    await page.getByTestId('chain').filter({ hasText: new RegExp(`^${chain.id} \\(`) }).waitFor({ timeout: 15_000 })
    assert.equal(wallet.chainId(), chain.id)
    const expected = pageChainOf(net.config.chain!)
    assert.deepEqual(wallet.added, [{ chainId: chain.id, chainName: expected.chain.name, rpcUrls: [net.config.chain!.rpcUrl] }])
    assert.equal(await page.getByTestId('balance').getAttribute('data-wei'), parseEther('10').toString())
  })

  test('a wallet that rejects gives a message; Register again binds the tab\'s peer id to the wallet with one transaction', async () => {
    const peerId = (await page.getByTestId('peer-id').filter({ hasText: /^12D3Koo/ }).textContent())!
    wallet.rejectNext()
    await page.getByRole('button', { name: 'Register' }).click()
    await page.locator('[data-tx="failed"]').waitFor({ timeout: 15_000 })
    assert.match((await page.locator('[data-tx="failed"]').textContent()) ?? '', /You rejected the request in your wallet/)
    assert.equal(await getAgent(reader, { config: pageChainOf(net.config.chain!).config, agent: wallet.address }), null)

    const sentBefore = wallet.requests.filter((r) => r.method === 'eth_sendTransaction').length
    await page.getByRole('button', { name: 'Register' }).click()
    await page.locator('[data-tx="confirmed"]').waitFor({ timeout: 30_000 })
    assert.equal(wallet.requests.filter((r) => r.method === 'eth_sendTransaction').length, sentBefore + 1, 'one wallet prompt')
    const record = (await getAgent(reader, { config: pageChainOf(net.config.chain!).config, agent: wallet.address }))!
    assert.equal(record.wallet, wallet.address)
    assert.equal(record.nodeId, nodeIdFromPeerId(peerId))
    const binding = await verifyAgentBinding({ chainId: chain.id, agent: record })
    assert.equal(binding.peerId, peerId)
    await page.getByTestId('registration').filter({ hasText: 'bound to this tab' }).waitFor({ timeout: 15_000 })
    assert.deepEqual(pageErrors, [])
  })

  test('once an epoch closes, Claim shows its states and the balance rises by exactly the pending reward less gas', async () => {
    const config = pageChainOf(net.config.chain!).config
    const pool = config.contracts.rewardPool
    const owner = createWalletClient({ chain, transport: http(chain.rpcUrls.default.http[0]), account: privateKeyToAccount(DEPLOYER_KEY) })
    const lent = createWalletClient({ chain, transport: http(chain.rpcUrls.default.http[0]), account: privateKeyToAccount(generatePrivateKey()) })
    await fetch(chain.rpcUrls.default.http[0]!, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'anvil_setBalance', params: [lent.account.address, numberToHex(parseEther('10'))] }) })
    const realOracle = await readContract(reader, { address: pool, abi: rewardPoolAbi, functionName: 'oracle' })
    const setOracle = (to: `0x${string}`) => transact(owner, 'setOracle', { config, to: pool, data: encodeFunctionData({ abi: rewardPoolAbi, functionName: 'setOracle', args: [to] }) })
    await setOracle(lent.account.address)
    let epoch: bigint
    const [deployBlock, perEpoch] = await Promise.all([
      readContract(reader, { address: pool, abi: rewardPoolAbi, functionName: 'deployBlock' }),
      readContract(reader, { address: pool, abi: rewardPoolAbi, functionName: 'BLOCKS_PER_EPOCH' }),
    ])
    const blockNumber = () => reader.request({ method: 'eth_blockNumber' }).then(BigInt)
    /** Mines until the latest block is the first of epoch `e` (the devnet also mines one a second). */
    const mineTo = async (e: bigint) => {
      const block = await blockNumber()
      const target = deployBlock + e * perEpoch
      if (block < target) await reader.request({ method: 'anvil_mine', params: [numberToHex(target - block), '0x0'] } as never)
    }
    try {
      // the funding and the report in one epoch: start at an epoch's first block
      await mineTo((await blockNumber() - deployBlock) / perEpoch + 1n)
      const contributions = [{ agent: wallet.address, ...contributionFromMetrics({ tokensProcessed: 25, avgLatencyMs: 150, uptimeSeconds: 120, requestCount: 2 }) }]
      const r = await reportContributions(lent, { config, contributions, fundWei: parseEther('0.5') })
      epoch = r.epoch!
      assert.equal(r.fundEpoch, epoch)
      // to the next epoch, then split the ended one (the network's own Oracle may get there first: anyone may)
      await mineTo(epoch + 1n)
      await reportContributions(lent, { config, contributions: [], distributeEpochs: [epoch] }).catch((e: unknown) => {
        if (!(e instanceof ChainActionError && e.reason === 'RewardPool: epoch already distributed')) throw e
      })
      assert.equal(await readContract(reader, { address: pool, abi: rewardPoolAbi, functionName: 'epochDistributed', args: [epoch] }), true)
    } finally {
      await setOracle(realOracle)
    }
    const predicted = (await predictEpochRewards(reader, { config, epoch })).get(wallet.address)!
    const pending = await getPendingReward(reader, { config, agent: wallet.address })
    assert.ok(predicted > 0n)
    assert.equal(pending, predicted, 'the pending reward is the share predicted from the booked work')
    await page.getByTestId('pending').filter({ hasText: /^0\.\d+ ETH$/ }).waitFor({ timeout: 15_000 })
    assert.equal(await page.getByTestId('pending').getAttribute('data-wei'), pending.toString())
    await page.getByRole('row').filter({ hasText: 'distributed' }).first().waitFor()

    // rejected first: a message, then a retry goes through
    wallet.rejectNext()
    await page.getByRole('button', { name: 'Claim' }).click()
    await page.locator('[data-tx="failed"]').filter({ hasText: 'claim failed' }).waitFor({ timeout: 15_000 })
    assert.match((await page.locator('[data-tx="failed"]').filter({ hasText: 'claim failed' }).textContent()) ?? '', /You rejected the request/)
    // Read now, not at the claim's parent block: npm start's devnet keeps no historical state, and
    // nothing but the claim moves this wallet's balance.
    const before = await getBalance(reader, { address: wallet.address })
    await page.getByRole('button', { name: 'Claim' }).click()
    await page.getByTestId('claim-hash').waitFor({ timeout: 30_000 })
    const hash = (await page.getByTestId('claim-hash').textContent()) as Hex
    const receipt = await getTransactionReceipt(reader, { hash })
    assert.equal(receipt.status, 'success')
    const afterClaim = await getBalance(reader, { address: wallet.address })
    assert.equal(afterClaim, before + pending - receipt.gasUsed * receipt.effectiveGasPrice)
    assert.equal(await getPendingReward(reader, { config, agent: wallet.address }), 0n)
    await page.getByTestId('pending').filter({ hasText: /^0 ETH$/ }).waitFor({ timeout: 15_000 })
    assert.deepEqual(pageErrors, [])
  })

  test('the tab serves a completion; the Oracle credits its served work to the bound wallet with no prompt, its rewards rise above 0 and Claim pays them', async () => {
    const config = pageChainOf(net.config.chain!).config
    const peerId = (await page.getByTestId('peer-id').filter({ hasText: /^12D3Koo/ }).textContent())!
    // What would prompt a person: transactions and signatures (reads like eth_chainId do not).
    const prompting = () => wallet.requests.filter((r) => /^(eth_sendTransaction|eth_sign|personal_sign|eth_signTypedData)/.test(r.method)).length
    const prompts = prompting()
    await page.getByRole('link', { name: 'Contribute' }).click()
    await page.getByRole('button', { name: 'Contribute' }).click()
    await page.locator('[data-phase="serving"]').waitFor({ timeout: 240_000 })
    // The host holds ~55% of the model: every completion goes through the tab.
    let done = false
    for (let i = 0; i < 60 && !done; i++) {
      const r = await fetch(`${net.apiUrl}/v1/completions`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ prompt: 'The capital of France is', max_tokens: 8, temperature: 0 }) })
      done = r.ok
      if (!done) await new Promise((res) => setTimeout(res, 1000))
    }
    assert.ok(done, `a completion; logs: ${net.logs().slice(-2000)}`)
    // The Oracle counted the tab's work from its reports and knows the wallet bound to its peer.
    const counted = await (async () => {
      for (let i = 0; i < 60; i++) {
        const s = servedSnapshotSchema.parse(await (await fetch(`${net.oracleUrl}${SERVED_PATH}`)).json())
        const n = s.nodes.find((x) => x.peerId === peerId)
        if (n && n.tokens > 0 && n.wallet === wallet.address) return n
        await new Promise((res) => setTimeout(res, 1000))
      }
    })()
    assert.ok(counted, 'the Oracle counted the tab\'s served tokens and credits them to its wallet')
    // The Wallet view shows the work booked to the wallet before the epoch's report.
    await page.getByRole('link', { name: 'Wallet' }).click()
    await page.waitForFunction(() => Number(document.querySelector('[data-testid="booked"]')?.getAttribute('data-tokens')) > 0, undefined, { timeout: 30_000 })
    // Epochs close (30 blocks; mined ahead here), the Oracle reports the booked work and distributes: a pending reward.
    const perEpoch = await readContract(reader, { address: config.contracts.rewardPool, abi: rewardPoolAbi, functionName: 'BLOCKS_PER_EPOCH' })
    let pending = 0n
    for (let i = 0; i < 40 && pending === 0n; i++) {
      await reader.request({ method: 'anvil_mine', params: [numberToHex(perEpoch / 3n), '0x0'] } as never)
      await new Promise((res) => setTimeout(res, 3000))
      pending = await getPendingReward(reader, { config, agent: wallet.address })
    }
    assert.ok(pending > 0n, `the Oracle's report paid the tab's wallet; logs: ${net.logs().slice(-2000)}`)
    assert.equal(prompting(), prompts, 'no wallet prompt while the tab served')

    await page.getByRole('link', { name: 'Wallet' }).click()
    await page.waitForFunction(() => BigInt(document.querySelector('[data-testid="pending"]')?.getAttribute('data-wei') ?? '0') > 0n, undefined, { timeout: 30_000 })
    const oldHash = await page.getByTestId('claim-hash').textContent().catch(() => null)
    // Read now, not at the claim's parent block: npm start's devnet keeps no historical state, and
    // nothing but the claim moves this wallet's balance. The pending reward may still grow (the
    // Oracle reports each epoch that closes), so the amount paid is read from the claim's event.
    const before = await getBalance(reader, { address: wallet.address })
    const pendingBefore = await getPendingReward(reader, { config, agent: wallet.address })
    await page.getByRole('button', { name: 'Claim' }).click()
    await page.waitForFunction((old) => {
      const h = document.querySelector('[data-testid="claim-hash"]')?.textContent
      return !!h && h !== old
    }, oldHash, { timeout: 30_000 })
    const hash = (await page.getByTestId('claim-hash').textContent()) as Hex
    const receipt = await getTransactionReceipt(reader, { hash })
    assert.equal(receipt.status, 'success')
    const [event] = parseEventLogs({ abi: rewardPoolAbi, eventName: 'RewardClaimed', logs: receipt.logs, args: { agent: wallet.address } })
    assert.ok(event, 'the claim emitted RewardClaimed for the wallet')
    const claimed = event.args.amount
    assert.ok(claimed >= pendingBefore && pendingBefore > 0n, `claimed ${claimed}, pending before ${pendingBefore}`)
    const afterClaim = await getBalance(reader, { address: wallet.address })
    assert.equal(afterClaim, before + claimed - receipt.gasUsed * receipt.effectiveGasPrice)
    assert.deepEqual(pageErrors, [])
  })
})
