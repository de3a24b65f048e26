import { encodeFunctionData, hexToBytes, keccak256, parseEther, type Address, type Hex, type PrivateKeyAccount } from 'viem'
import { privateKeyToAccount } from 'viem/accounts'
import { getBalance, getGasPrice } from 'viem/actions'
import { claimReward } from '../../shared/chain/claimReward.ts'
import { nodeIdFromPeerId } from '../../shared/chain/agentBinding.ts'
import { getAgent } from '../../shared/chain/getAgent.ts'
import { getPendingReward } from '../../shared/chain/getPendingReward.ts'
import { registerAgent } from '../../shared/chain/registerAgent.ts'
import { agentRegistryAbi } from '../../shared/chain/abis.ts'
import { transact, type ChainClient } from '../../shared/chain/transact.ts'
import type { Logger } from '../../shared/logger.ts'
import { walletClientFor, type NodeChain } from '../chain/chainConfigFromEnv.ts'

/** What a worker's page gives the farm wallet: its peer id, and its peer key's signature over a binding. */
export type FarmPageSigner = {
  peerId: string
  /** The page signs agentBindingMessage(chainId, wallet, its peer) and nothing else (web/agent/pageAgentBinding.ts). */
  signBinding(chainId: number, wallet: Address): Promise<{ peerId: string; signature: Hex }>
}

export type FarmWalletInit = {
  /** The farm's wallet (PLUMISE_PRIVATE_KEY or keystore): it pays the workers' gas and receives their rewards. */
  account: PrivateKeyAccount
  chain: NodeChain
  logger: Logger
  /** A worker wallet below this balance is topped up to twice it from the farm wallet (gas for registering and claiming). @default 0.01 ether */
  gasReserveWei?: bigint
}

export type FarmWallet = {
  readonly address: Address
  /** The worker's own wallet: derived from the farm's key (a signature over the worker number), the same on every run. */
  workerAddress(worker: number): Address
  /**
   * Binds the worker's page peer to its worker wallet in the AgentRegistry (the registry holds one
   * peer per wallet, so each page has its own): funds the worker wallet's gas, registers it with the
   * page's binding signature, or re-binds it when the page's identity changed. Idempotent.
   */
  bind(worker: number, page: FarmPageSigner): Promise<{ wallet: Address; sent: boolean }>
  /** The worker wallet's pending reward, wei. */
  pending(worker: number): Promise<bigint>
  /** Claims each worker wallet's pending reward and forwards what it holds above its gas reserve to the farm wallet. */
  sweep(workers: number[]): Promise<{ claimedWei: bigint; forwardedWei: bigint }>
}

/**
 * One farm wallet for all of a farm's pages (issue 12). The registry binds one peer to a wallet, and
 * a page holds no key that signs reports, so each worker gets a wallet derived from the farm's key:
 * its page's peer is bound to it (the page's key signs the binding; the wallet key never enters a
 * page), the Oracle credits the page's served work there, and `sweep` claims it and pays the farm
 * wallet. Derivation by signature works with a keystore as well as a raw key (RFC 6979 signatures
 * are deterministic).
 */
export async function createFarmWallet(init: FarmWalletInit): Promise<FarmWallet> {
  const { chain, logger } = init
  const config = chain.config
  const reserve = init.gasReserveWei ?? parseEther('0.01')
  const farmClient = walletClientFor(chain, init.account)
  const workers = new Map<number, PrivateKeyAccount>()
  // One signature per worker, made up front for the ones asked about (signing is async).
  const accountOf = async (worker: number): Promise<PrivateKeyAccount> => {
    let a = workers.get(worker)
    if (!a) {
      const seed = keccak256(await init.account.signMessage({ message: `shardmesh farm worker wallet v1\nworker: ${worker}` }))
      a = privateKeyToAccount(seed)
      workers.set(worker, a)
    }
    return a
  }
  for (let w = 1; w <= 64; w++) await accountOf(w)
  const clientOf = async (worker: number) => walletClientFor(chain, await accountOf(worker))
  let funding: Promise<unknown> = Promise.resolve()

  /** Tops the worker wallet up from the farm wallet (one transfer at a time: one nonce sequence). */
  async function fund(worker: Address): Promise<void> {
    const run = funding.then(async () => {
      const balance = await getBalance(farmClient, { address: worker })
      if (balance >= reserve) return
      const value = reserve * 2n - balance
      await transact(farmClient as ChainClient, 'fundWorker', { config, to: worker, data: '0x', value })
      logger.info({ worker, wei: value.toString() }, 'farm wallet: funded a worker wallet\'s gas')
    })
    funding = run.catch(() => undefined)
    return run
  }

  return {
    address: init.account.address,
    workerAddress: (worker) => {
      const a = workers.get(worker)
      if (!a) throw new Error(`worker ${worker} has no derived wallet (1..64 are derived)`)
      return a.address
    },
    async bind(worker, page) {
      const account = await accountOf(worker)
      const client = await clientOf(worker)
      const record = await getAgent(client as ChainClient, { config, agent: account.address })
      if (record && record.nodeId.toLowerCase() === nodeIdFromPeerId(page.peerId)) {
        // registerAgent repairs a binding that does not verify, and sends nothing when it does.
        const r = await registerAgent(client as ChainClient, { config, peer: signerOf(page, account.address, config.chainId), precompile: false, metadata: { kind: 'farm-page', worker } })
        return { wallet: account.address, sent: r.hash !== undefined }
      }
      await fund(account.address)
      if (record) {
        // The page's identity changed (a wiped profile): its wallet leaves its old peer first.
        await transact(client as ChainClient, 'deregisterAgent', { config, to: config.contracts.agentRegistry, data: encodeFunctionData({ abi: agentRegistryAbi, functionName: 'deregisterAgent' }) })
      }
      await registerAgent(client as ChainClient, { config, peer: signerOf(page, account.address, config.chainId), precompile: false, metadata: { kind: 'farm-page', worker } })
      logger.info({ worker, wallet: account.address, peerId: page.peerId }, 'farm wallet: the worker\'s page is bound to its wallet; the Oracle credits its work there')
      return { wallet: account.address, sent: true }
    },
    async pending(worker) {
      return getPendingReward(farmClient as ChainClient, { config, agent: (await accountOf(worker)).address })
    },
    async sweep(list) {
      let claimedWei = 0n
      let forwardedWei = 0n
      const gasPrice = await getGasPrice(farmClient)
      for (const worker of list) {
        const account = await accountOf(worker)
        const client = await clientOf(worker)
        const pending = await getPendingReward(client as ChainClient, { config, agent: account.address })
        if (pending > 0n) {
          await fund(account.address)
          const c = await claimReward(client as ChainClient, { config })
          claimedWei += c.amount ?? 0n
        }
        // What it holds above its gas reserve goes to the farm wallet (a plain transfer: 21000 gas).
        const balance = await getBalance(client, { address: account.address })
        const keep = reserve + 21_000n * gasPrice * 2n
        if (balance > keep + parseEther('0.001')) {
          const value = balance - keep
          await transact(client as ChainClient, 'forwardToFarm', { config, to: init.account.address, data: '0x', value })
          forwardedWei += value
        }
      }
      if (claimedWei > 0n || forwardedWei > 0n) logger.info({ claimedWei: claimedWei.toString(), forwardedWei: forwardedWei.toString(), farm: init.account.address }, 'farm wallet: rewards claimed and forwarded')
      return { claimedWei, forwardedWei }
    },
  }
}

function signerOf(page: FarmPageSigner, wallet: Address, chainId: number) {
  return {
    peerId: page.peerId,
    // The page signs the binding message itself from (chain, wallet): registerAgent checks the signature before it sends anything.
    sign: async () => {
      const { peerId, signature } = await page.signBinding(chainId, wallet)
      if (peerId !== page.peerId) throw new Error(`the page's peer is ${peerId}, not ${page.peerId}`)
      return hexToBytes(signature)
    },
  }
}
