import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { QueryClient, QueryClientProvider, useQuery } from '@tanstack/react-query'
import { useMemo, useState } from 'react'
import { createPublicClient, formatEther, getAddress, isAddress, type Address, type Hash, type PublicClient } from 'viem'
import { chainHttp } from '../../../shared/chain/chainHttp.ts'
import { WagmiProvider, createConfig, useConfig, useConnection, useConnectors } from 'wagmi'
import { connect, disconnect, switchChain, waitForTransactionReceipt, writeContract } from 'wagmi/actions'
import type { AppConfig } from '../../../shared/app/appConfig.ts'
import { agentRegistryAbi, rewardPoolAbi } from '../../../shared/chain/abis.ts'
import { createAgentMetadata, nodeIdFromPeerId, verifyAgentBinding } from '../../../shared/chain/agentBinding.ts'
import { getAgent } from '../../../shared/chain/getAgent.ts'
import { getPendingReward } from '../../../shared/chain/getPendingReward.ts'
import { getEpochInfo, getRewardHistory } from '../../../shared/chain/getRewardStatus.ts'
import type { ChainClient } from '../../../shared/chain/transact.ts'
import { loadOrCreateBrowserIdentity } from '../../identity/indexedDbIdentity.ts'
import { describeWalletError } from '../../wallet/describeWalletError.ts'
import { BOOKED_PATH, bookedWorkSchema } from '../../../shared/oracle/bookedWork.ts'
import { oracleRoute } from '../loadAppConfig.ts'
import { pageChainOf, type PageChain } from '../../wallet/pageChain.ts'

// wagmi, react-query and this view load only when the Wallet view opens (the app's initial JS
// stays within its budget); reads go to the network's RPC directly, so they need no wallet.

type TxState =
  | { kind: 'idle' }
  | { kind: 'wallet' }
  | { kind: 'pending'; hash: Hash }
  | { kind: 'confirmed'; hash: Hash }
  | { kind: 'failed'; message: string; hash?: Hash }

function TxStatus({ state, what }: { state: TxState; what: string }) {
  switch (state.kind) {
    case 'idle':
      return null
    case 'wallet':
      return <p role="status" data-tx="wallet">Waiting for your wallet to approve the {what}…</p>
    case 'pending':
      return (
        <p role="status" data-tx="pending">
          {what} pending: <span className="mono">{state.hash}</span>
        </p>
      )
    case 'confirmed':
      return (
        <p role="status" data-tx="confirmed" className="ok">
          {what} confirmed: <span className="mono" data-testid={`${what}-hash`}>{state.hash}</span>
        </p>
      )
    case 'failed':
      return (
        <p role="alert" data-tx="failed" className="error">
          {what} failed. {state.message}
        </p>
      )
  }
}

const eth = (wei: bigint | undefined, symbol: string) => (wei === undefined ? '…' : `${formatEther(wei)} ${symbol}`)

/** The wallet, the tab's registration and the rewards, over one network's chain. */
export default function WalletView({ config }: { config: AppConfig }) {
  const chain = config.chain
  const setup = useMemo(() => {
    if (!chain) return undefined
    const pc = pageChainOf(chain)
    const wagmi = createConfig({ chains: [pc.chain], transports: { [pc.chain.id]: chainHttp(pc.rpcUrl) }, connectors: [], multiInjectedProviderDiscovery: true })
    const reader = createPublicClient({ chain: pc.chain, transport: chainHttp(pc.rpcUrl), pollingInterval: 500 }) as PublicClient
    return { pc, wagmi, reader, queries: new QueryClient() }
  }, [chain])
  if (!setup) {
    return (
      <section className="view">
        <h2>Wallet</h2>
        <p className="note">This network runs without a chain: there is nothing to register or claim.</p>
      </section>
    )
  }
  return (
    <WagmiProvider config={setup.wagmi}>
      <QueryClientProvider client={setup.queries}>
        <WalletPanel pc={setup.pc} reader={setup.reader} bookedUrl={(a) => oracleRoute(config, `${BOOKED_PATH}?address=${a}`)} />
      </QueryClientProvider>
    </WagmiProvider>
  )
}

function WalletPanel({ pc, reader, bookedUrl }: { pc: PageChain; reader: PublicClient; bookedUrl: (address: Address) => string }) {
  const wagmi = useConfig()
  const conn = useConnection()
  const connectors = useConnectors()
  const [picking, setPicking] = useState(false)
  const [message, setMessage] = useState<string>()
  const symbol = pc.chain.nativeCurrency.symbol
  const address = conn.address
  const rightChain = conn.chainId === pc.chain.id

  const balance = useQuery({ queryKey: ['balance', address], enabled: !!address, refetchInterval: 2000, queryFn: () => reader.getBalance({ address: address! }) })

  async function run(f: () => Promise<unknown>) {
    setMessage(undefined)
    try {
      await f()
    } catch (e) {
      setMessage(describeWalletError(e))
    }
  }

  return (
    <section aria-labelledby="wallet-title" className="view">
      <h2 id="wallet-title">Wallet</h2>
      {!address ? (
        <>
          <button type="button" onClick={() => setPicking(true)}>
            Connect wallet
          </button>
          {picking && (
            <div role="list" aria-label="wallets">
              {connectors.length === 0 && <p className="note">No wallet found in this browser (wallets announce themselves through EIP-6963).</p>}
              {connectors.map((c) => (
                <button type="button" role="listitem" key={c.uid} onClick={() => run(() => connect(wagmi, { connector: c }).then(() => setPicking(false)))}>
                  {c.icon && <img src={c.icon} alt="" width={20} height={20} />} {c.name}
                </button>
              ))}
            </div>
          )}
        </>
      ) : (
        <dl className="facts">
          <dt>Account</dt>
          <dd className="mono" data-testid="account">
            {address}
          </dd>
          <dt>Balance</dt>
          <dd data-testid="balance" data-wei={balance.data?.toString()}>
            {eth(balance.data, symbol)}
          </dd>
          <dt>Chain</dt>
          <dd data-testid="chain">
            {conn.chainId} {rightChain ? `(${pc.chain.name})` : `— the network rewards on ${pc.chain.name} (${pc.chain.id})`}
          </dd>
        </dl>
      )}
      {address && !rightChain && (
        <button type="button" onClick={() => run(() => switchChain(wagmi, { chainId: pc.chain.id }))}>
          Switch to {pc.chain.name}
        </button>
      )}
      {address && (
        <button type="button" onClick={() => run(() => disconnect(wagmi))}>
          Disconnect
        </button>
      )}
      {message && (
        <p role="alert" className="error" data-testid="wallet-message">
          {message}
        </p>
      )}
      {address && rightChain && <Register pc={pc} reader={reader} address={address} />}
      <Rewards pc={pc} reader={reader} connected={rightChain ? address : undefined} bookedUrl={bookedUrl} />
    </section>
  )
}

function Register({ pc, reader, address }: { pc: PageChain; reader: PublicClient; address: Address }) {
  const wagmi = useConfig()
  const [tx, setTx] = useState<TxState>({ kind: 'idle' })
  const peerId = useQuery({ queryKey: ['peerId'], staleTime: Infinity, queryFn: async () => peerIdFromPrivateKey(await loadOrCreateBrowserIdentity()).toString() })
  const record = useQuery({ queryKey: ['agent', address, tx.kind], refetchInterval: 5000, queryFn: () => getAgent(reader as ChainClient, { config: pc.config, agent: address }) })
  const boundHere = !!record.data && !!peerId.data && record.data.nodeId.toLowerCase() === nodeIdFromPeerId(peerId.data)

  async function register() {
    setTx({ kind: 'wallet' })
    let hash: Hash | undefined
    try {
      const key = await loadOrCreateBrowserIdentity()
      const peer = { peerId: peerIdFromPrivateKey(key).toString(), sign: (m: Uint8Array) => key.sign(m) }
      const nodeId = nodeIdFromPeerId(peer.peerId)
      const existing = await getAgent(reader as ChainClient, { config: pc.config, agent: address })
      if (existing && existing.nodeId.toLowerCase() !== nodeId) throw new Error(`this wallet is already registered for another node (${existing.nodeId}); deregister it first`)
      // the page's peer key signs (chain id, wallet, peer) here; the wallet signs only the one transaction
      const metadata = await createAgentMetadata({ chainId: pc.config.chainId, wallet: address, peer, extra: { kind: 'browser-tab' } })
      await verifyAgentBinding({ chainId: pc.config.chainId, agent: { wallet: address, nodeId, metadata } })
      const base = { address: pc.config.contracts.agentRegistry, abi: agentRegistryAbi, chainId: pc.chain.id, account: address } as const
      hash = existing
        ? await writeContract(wagmi, { ...base, functionName: 'updateMetadata', args: [metadata] })
        : await writeContract(wagmi, { ...base, functionName: 'registerAgent', args: [nodeId, metadata] })
      setTx({ kind: 'pending', hash })
      const receipt = await waitForTransactionReceipt(wagmi, { hash, chainId: pc.chain.id, pollingInterval: 500 })
      if (receipt.status !== 'success') throw new Error('the transaction reverted on chain')
      setTx({ kind: 'confirmed', hash })
      void record.refetch()
    } catch (e) {
      setTx({ kind: 'failed', message: describeWalletError(e), hash })
    }
  }

  return (
    <section aria-labelledby="register-title" className="card">
      <h3 id="register-title">This tab's agent</h3>
      <p>
        Peer id <span className="mono" data-testid="peer-id">{peerId.data ?? '…'}</span>
      </p>
      <p data-testid="registration">
        {record.data === undefined
          ? 'Reading the AgentRegistry…'
          : record.data === null
            ? 'Not registered: Register binds this tab’s peer to this wallet in the AgentRegistry (one transaction; this tab’s key signs the binding, the wallet only the transaction).'
            : boundHere
              ? 'Registered: this wallet is bound to this tab’s peer. (The Oracle does not yet book a tab’s served work to its bound wallet on chain: that part is still to come.)'
              : `This wallet is registered for another node (${record.data.nodeId}).`}
      </p>
      {!boundHere && (
        <button type="button" onClick={() => void register()} disabled={tx.kind === 'wallet' || tx.kind === 'pending'}>
          Register
        </button>
      )}
      <TxStatus state={tx} what="registration" />
    </section>
  )
}

function Rewards({ pc, reader, connected, bookedUrl }: { pc: PageChain; reader: PublicClient; connected: Address | undefined; bookedUrl: (address: Address) => string }) {
  const wagmi = useConfig()
  const [typed, setTyped] = useState('')
  const [claim, setClaim] = useState<TxState>({ kind: 'idle' })
  const symbol = pc.chain.nativeCurrency.symbol
  const lookup: Address | undefined = isAddress(typed, { strict: false }) ? getAddress(typed) : connected
  const client = reader as ChainClient
  const status = useQuery({
    queryKey: ['rewards', lookup, claim.kind],
    enabled: !!lookup,
    refetchInterval: 3000,
    queryFn: async () => {
      const agent = lookup!
      const [info, pending, history] = await Promise.all([
        getEpochInfo(client, { config: pc.config }),
        getPendingReward(client, { config: pc.config, agent }),
        getRewardHistory(client, { config: pc.config, agent }),
      ])
      const [work, blockSeconds] = await Promise.all([
        reader.readContract({ address: pc.config.contracts.rewardPool, abi: rewardPoolAbi, functionName: 'getEpochContribution', args: [info.epoch, agent] }),
        averageBlockSeconds(reader, info.blockNumber),
      ])
      return { agent, info, pending, history, work, blockSeconds }
    },
  })
  const s = status.data
  // What the Oracle booked to this wallet (a page's served work is credited to the wallet bound to it), before the epoch's report.
  const booked = useQuery({
    queryKey: ['booked', lookup],
    enabled: !!lookup,
    refetchInterval: 5000,
    queryFn: async () => {
      const res = await fetch(bookedUrl(lookup!))
      return res.ok ? bookedWorkSchema.parse(await res.json()) : null
    },
  })
  // The newest epoch with work booked: the current one, or one that closed a moment ago and whose
  // report is on its way (epochs are a few dozen blocks; the current one is often still empty).
  const bookedNow = booked.data?.epochs.find((e) => e.tokens > 0) ?? booked.data?.epochs.find((e) => e.epoch === booked.data?.epoch)
  const bookedEpoch = bookedNow?.epoch ?? booked.data?.epoch

  async function doClaim() {
    setClaim({ kind: 'wallet' })
    let hash: Hash | undefined
    try {
      hash = await writeContract(wagmi, { address: pc.config.contracts.rewardPool, abi: rewardPoolAbi, functionName: 'claimReward', chainId: pc.chain.id, account: connected })
      setClaim({ kind: 'pending', hash })
      const receipt = await waitForTransactionReceipt(wagmi, { hash, chainId: pc.chain.id, pollingInterval: 500 })
      if (receipt.status !== 'success') throw new Error('the transaction reverted on chain')
      setClaim({ kind: 'confirmed', hash })
    } catch (e) {
      setClaim({ kind: 'failed', message: describeWalletError(e), hash })
    }
  }

  return (
    <section aria-labelledby="rewards-title" className="card">
      <h3 id="rewards-title">Rewards</h3>
      <label className="field">
        <span>Look up an address</span>
        <input value={typed} onChange={(e) => setTyped(e.target.value.trim())} placeholder={connected ?? '0x…'} spellCheck={false} />
      </label>
      {!lookup && <p className="note">Connect a wallet or type an address to see its rewards.</p>}
      {status.error && (
        <p role="alert" className="error">
          Reading the chain failed: {describeWalletError(status.error)}
        </p>
      )}
      {s && (
        <dl className="facts">
          <dt>Epoch</dt>
          <dd data-testid="epoch">
            {s.info.epoch.toString()}
            {s.info.endBlock !== undefined &&
              ` — ends at block ${s.info.endBlock} (${s.info.endBlock - s.info.blockNumber} blocks${s.blockSeconds ? `, about ${Math.round(Number(s.info.endBlock - s.info.blockNumber) * s.blockSeconds)} s` : ''})`}
          </dd>
          <dt>Pending reward</dt>
          <dd data-testid="pending" data-wei={s.pending.toString()}>
            {eth(s.pending, symbol)}
          </dd>
          <dt>Work this epoch</dt>
          <dd data-testid="work">
            {s.work.processedTokens.toString()} tokens, {s.work.taskCount.toString()} tasks, {s.work.uptimeSeconds.toString()} s uptime, as the Oracle has reported it to the RewardPool so far
          </dd>
          <dt>Booked by the Oracle</dt>
          <dd data-testid="booked" data-tokens={bookedNow?.tokens ?? 0}>
            {booked.data
              ? `${bookedNow?.tokens ?? 0} tokens, ${Math.round(bookedNow?.uptimeSeconds ?? 0)} s uptime in epoch ${bookedEpoch}: ${bookedEpoch === booked.data.epoch ? 'reported to the RewardPool once this epoch closes' : `closed, reported to the RewardPool next (epoch ${booked.data.epoch} is under way)`}`
              : booked.isError || booked.data === null
                ? 'the Oracle does not say (unreachable, or it books no rewards)'
                : '…'}
          </dd>
        </dl>
      )}
      {s && (
        <table aria-label="past epochs">
          <thead>
            <tr>
              <th>Epoch</th>
              <th>Share</th>
              <th>Of</th>
              <th>Status</th>
            </tr>
          </thead>
          <tbody>
            {s.history.epochs.length === 0 && (
              <tr>
                <td colSpan={4}>No epochs with reported work yet.</td>
              </tr>
            )}
            {s.history.epochs.map((e) => (
              <tr key={e.epoch.toString()}>
                <td>{e.epoch.toString()}</td>
                <td>{eth(e.share, symbol)}</td>
                <td>{eth(e.totalReward, symbol)}</td>
                <td>{e.distributed ? 'distributed' : 'not yet distributed'}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      {s && s.history.claims.length > 0 && (
        <ul aria-label="claims">
          {s.history.claims.map((c) => (
            <li key={c.hash}>
              claimed {eth(c.amount, symbol)} in block {c.blockNumber.toString()} <span className="mono">{c.hash}</span>
            </li>
          ))}
        </ul>
      )}
      {connected && s && s.agent === connected && (
        <button type="button" onClick={() => void doClaim()} disabled={claim.kind === 'wallet' || claim.kind === 'pending'}>
          Claim
        </button>
      )}
      <TxStatus state={claim} what="claim" />
    </section>
  )
}

/** Seconds per block over the last 20 blocks (for "ends in about … s"); undefined on a fresh chain. */
async function averageBlockSeconds(reader: PublicClient, latest: bigint): Promise<number | undefined> {
  if (latest < 20n) return undefined
  const [a, b] = await Promise.all([reader.getBlock({ blockNumber: latest - 20n }), reader.getBlock({ blockNumber: latest })])
  return Number(b.timestamp - a.timestamp) / 20
}
