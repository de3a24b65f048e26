import type { Page } from 'playwright-core'
import { createWalletClient, defineChain, hexToNumber, http, numberToHex, type Address, type Hex } from 'viem'
import { privateKeyToAccount } from 'viem/accounts'
import { sendTransaction } from 'viem/actions'

/** A request the test wallet saw (what a person would have been prompted for, and what it forwarded). */
export type WalletRequest = { method: string; params: unknown }

export type TestWallet = {
  address: Address
  /** The chain the wallet is on now. */
  chainId(): number
  /** Every request, in order. */
  requests: WalletRequest[]
  /** The next prompt (a transaction, a switch) is rejected as a person would (EIP-1193 code 4001). */
  rejectNext(): void
  /** The chains added through wallet_addEthereumChain, as asked. */
  added: Array<{ chainId: number; chainName: string; rpcUrls: string[] }>
}

type RpcError = { code: number; message: string }

/**
 * An injected wallet of the test's own: an EIP-1193 provider announced through EIP-6963 in the
 * page, whose key stays in Node. The page calls into Node through Playwright's binding; here it
 * signs and sends with viem against the chain it was told to add, and forwards reads there. It
 * starts on chain 1, which it knows, and knows no other until the page adds one.
 */
export async function installTestWallet(page: Page, opts: { privateKey: Hex; name?: string }): Promise<TestWallet> {
  const account = privateKeyToAccount(opts.privateKey)
  let chainId = 1
  let connected = false
  let reject = false
  const rpcs = new Map<number, string>()
  const requests: WalletRequest[] = []
  const added: TestWallet['added'] = []

  const rpc = async (method: string, params: unknown): Promise<unknown> => {
    const url = rpcs.get(chainId)
    if (!url) throw { code: 4900, message: `the test wallet cannot reach chain ${chainId}` } satisfies RpcError
    const res = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ jsonrpc: '2.0', id: 1, method, params: params ?? [] }) })
    const body = (await res.json()) as { result?: unknown; error?: RpcError }
    if (body.error) throw { code: body.error.code, message: body.error.message } satisfies RpcError
    return body.result
  }
  const prompt = () => {
    if (!reject) return
    reject = false
    throw { code: 4001, message: 'User rejected the request.' } satisfies RpcError
  }

  async function handle(method: string, params: unknown): Promise<unknown> {
    requests.push({ method, params })
    const p = (Array.isArray(params) ? params : []) as unknown[]
    switch (method) {
      case 'eth_requestAccounts':
        prompt()
        connected = true
        return [account.address]
      case 'eth_accounts':
        return connected ? [account.address] : []
      case 'eth_chainId':
        return numberToHex(chainId)
      case 'wallet_switchEthereumChain': {
        prompt()
        const id = hexToNumber((p[0] as { chainId: Hex }).chainId)
        if (id !== 1 && !rpcs.has(id)) throw { code: 4902, message: `Unrecognized chain ID ${id}. Try adding the chain using wallet_addEthereumChain first.` } satisfies RpcError
        chainId = id
        return null
      }
      case 'wallet_addEthereumChain': {
        prompt()
        const c = p[0] as { chainId: Hex; chainName: string; rpcUrls: string[] }
        const id = hexToNumber(c.chainId)
        added.push({ chainId: id, chainName: c.chainName, rpcUrls: c.rpcUrls })
        rpcs.set(id, c.rpcUrls[0]!)
        chainId = id // as MetaMask does: adding switches to it
        return null
      }
      case 'eth_sendTransaction': {
        prompt()
        const tx = p[0] as { to: Address; data?: Hex; value?: Hex; gas?: Hex }
        const url = rpcs.get(chainId)
        if (!url) throw { code: 4900, message: `the test wallet cannot reach chain ${chainId}` } satisfies RpcError
        const chain = defineChain({ id: chainId, name: `chain ${chainId}`, nativeCurrency: { name: 'Ether', symbol: 'ETH', decimals: 18 }, rpcUrls: { default: { http: [url] } } })
        const client = createWalletClient({ chain, account, transport: http(url) })
        return sendTransaction(client, { to: tx.to, data: tx.data, value: tx.value ? BigInt(tx.value) : undefined, gas: tx.gas ? BigInt(tx.gas) : undefined })
      }
      case 'personal_sign':
      case 'eth_sign':
      case 'eth_signTypedData_v4':
        throw { code: 4200, message: `the test wallet does not sign ${method}` } satisfies RpcError
      default:
        return rpc(method, params)
    }
  }

  await page.exposeBinding('__testWalletRequest', async (_source, method: string, params: unknown) => {
    try {
      return { result: await handle(method, params) }
    } catch (e) {
      const err = e as Partial<RpcError>
      return { error: { code: typeof err.code === 'number' ? err.code : -32603, message: String(err.message ?? e) } }
    }
  })
  await page.addInitScript(
    ({ name }) => {
      type Listener = (...args: unknown[]) => void
      const listeners = new Map<string, Set<Listener>>()
      const emit = (event: string, arg: unknown) => listeners.get(event)?.forEach((l) => l(arg))
      const call = (window as unknown as { __testWalletRequest: (m: string, p: unknown) => Promise<{ result?: unknown; error?: { code: number; message: string } }> }).__testWalletRequest
      const provider = {
        async request({ method, params }: { method: string; params?: unknown }) {
          const r = await call(method, params)
          if (r.error) throw Object.assign(new Error(r.error.message), { code: r.error.code })
          if (method === 'wallet_switchEthereumChain' || method === 'wallet_addEthereumChain') emit('chainChanged', await provider.request({ method: 'eth_chainId' }))
          if (method === 'eth_requestAccounts') emit('connect', { chainId: await provider.request({ method: 'eth_chainId' }) })
          return r.result
        },
        on(event: string, l: Listener) {
          if (!listeners.has(event)) listeners.set(event, new Set())
          listeners.get(event)!.add(l)
          return provider
        },
        removeListener(event: string, l: Listener) {
          listeners.get(event)?.delete(l)
          return provider
        },
      }
      const icon = 'data:image/svg+xml,' + encodeURIComponent('<svg xmlns="http://www.w3.org/2000/svg" width="32" height="32"><circle cx="16" cy="16" r="14" fill="#3a7"/></svg>')
      const info = Object.freeze({ uuid: '6a0f3a9e-5b7e-4c1e-9f1a-2d3c4b5a6978', name, icon, rdns: 'dev.shardmesh.testwallet' })
      const announce = () => window.dispatchEvent(new CustomEvent('eip6963:announceProvider', { detail: Object.freeze({ info, provider }) }))
      window.addEventListener('eip6963:requestProvider', announce)
      announce()
    },
    { name: opts.name ?? 'Test Wallet' },
  )
  return {
    address: account.address,
    chainId: () => chainId,
    requests,
    rejectNext: () => {
      reject = true
    },
    added,
  }
}
