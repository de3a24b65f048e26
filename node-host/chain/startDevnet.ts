import { bytesToHex, createWalletClient, numberToHex, parseEther, type Account, type Address, type Chain, type Hex, type Transport, type WalletClient } from 'viem'
import { getBalance, getBlockNumber, readContract } from 'viem/actions'
import { chainHttp } from '../../shared/chain/chainHttp.ts'
import { pbkdf2 } from '@noble/hashes/pbkdf2.js'
import { sha512 } from '@noble/hashes/sha2.js'
import { HDKey, hdKeyToAccount, privateKeyToAccount } from 'viem/accounts'
import type { Logger } from '../../shared/logger.ts'
import { silentLogger } from '../../shared/logger.ts'
import { rewardPoolAbi } from '../../shared/chain/abis.ts'
import { devnetChainConfig, viemChainOf, type ChainConfig, type DevnetFile } from '../../shared/chain/chainConfig.ts'
import type { PrecompileAddresses, VerifyInferenceLayout } from '../../shared/chain/precompiles.ts'
import { deployContracts } from './deployContracts.ts'
import { writeDevnetFile } from './devnetFile.ts'
import { ANVIL_MNEMONIC, startAnvil } from './startAnvil.ts'

export type StartDevnetOptions = {
  /** anvil's port. @default a free one */
  port?: number
  /** @default 31337 */
  chainId?: number
  /** Addresses to fund (the local hosts' wallets): each gets `fundWei` more. */
  fund?: readonly Address[]
  /** @default 100 ether */
  fundWei?: bigint
  /** Write the addresses file here (see DevnetFile). */
  out?: string
  /** An empty block every this many seconds besides the ones transactions mine, so epochs pass on their own; 0: blocks only on transactions. @default 1 */
  blockTime?: number
  /** RewardPool epoch length in blocks. @default 60 */
  blocksPerEpoch?: number
  /** @default 'agent-last' */
  verifyInferenceLayout?: VerifyInferenceLayout
  /** No historical state in anvil (see StartAnvilOptions.pruneHistory): what long-running devnets want. @default false */
  pruneHistory?: boolean
  logger?: Logger
  signal?: AbortSignal
}

export type DevAccount = { address: Address; privateKey: Hex }

export type Devnet = {
  rpcUrl: string
  chainId: number
  /** For the shared/chain actions. */
  config: ChainConfig
  /** A viem Chain for clients of this devnet. */
  chain: Chain
  contracts: { agentRegistry: Address; rewardPool: Address }
  precompiles: PrecompileAddresses
  /** What the addresses file holds (written to `out` when given). */
  file: DevnetFile
  /** anvil's deterministic accounts: the contracts' owner, the RewardPool's oracle, and the rest. */
  accounts: { deployer: DevAccount; oracle: DevAccount; others: DevAccount[] }
  /** A wallet client of one of the accounts (or any private key). */
  walletClient(account: DevAccount | Hex): WalletClient<Transport, Chain, Account>
  /** Gas of each deployment and setup transaction, by contract name. */
  deployGas: Record<string, bigint>
  /** The first block of the RewardPool's epoch 0 (its deploy block). */
  deployBlock: bigint
  mine(blocks: number): Promise<void>
  /** Mines until the latest block is the first of the next epoch; returns that epoch. */
  mineToNextEpoch(): Promise<bigint>
  close(): Promise<void>
}

/** anvil's accounts 0..count-1 (BIP-39 seed once, then BIP-44 m/44'/60'/0'/0/i). */
function devAccounts(count: number): DevAccount[] {
  const master = HDKey.fromMasterSeed(pbkdf2(sha512, ANVIL_MNEMONIC, 'mnemonic', { c: 2048, dkLen: 64 }))
  return Array.from({ length: count }, (_, i) => {
    const account = hdKeyToAccount(master, { addressIndex: i })
    return { address: account.address, privateKey: bytesToHex(account.getHdKey().privateKey!) }
  })
}

/**
 * A local chain: anvil on 127.0.0.1, AgentRegistry and RewardPool deployed (oracle: dev account 1),
 * the precompile stand-ins at Plumise's addresses, the given wallets funded, and the addresses
 * written to `out`.
 */
export async function startDevnet(options: StartDevnetOptions = {}): Promise<Devnet> {
  const log = options.logger ?? silentLogger
  const blocksPerEpoch = options.blocksPerEpoch ?? 60
  const anvil = await startAnvil({ port: options.port, chainId: options.chainId, blockTime: options.blockTime ?? 1, pruneHistory: options.pruneHistory, signal: options.signal })
  try {
    const [deployer, oracle, ...others] = devAccounts(10) as [DevAccount, DevAccount, ...DevAccount[]]
    const layout = options.verifyInferenceLayout ?? 'agent-last'
    // the config only needs the chain id and kind until the addresses are known
    const chain = viemChainOf(devnetChainConfig({ chainId: anvil.chainId } as DevnetFile), anvil.rpcUrl)
    const transport = chainHttp(anvil.rpcUrl, { retryCount: 0 })
    const walletClient = (a: DevAccount | Hex) => createWalletClient({ chain, transport, account: privateKeyToAccount(typeof a === 'string' ? a : a.privateKey), pollingInterval: 100 })
    const owner = walletClient(deployer)
    const deployed = await deployContracts({ client: owner, oracle: oracle.address, blocksPerEpoch, verifyInferenceLayout: layout })
    const deployBlock = await readContract(owner, { address: deployed.contracts.rewardPool, abi: rewardPoolAbi, functionName: 'deployBlock' })

    const fundWei = options.fundWei ?? parseEther('100')
    for (const address of options.fund ?? []) {
      const balance = await getBalance(owner, { address })
      await owner.request({ method: 'anvil_setBalance', params: [address, numberToHex(balance + fundWei)] } as never)
    }

    const file: DevnetFile = {
      rpcUrl: anvil.rpcUrl,
      chainId: anvil.chainId,
      contracts: deployed.contracts,
      precompiles: deployed.precompiles,
      verifyInferenceLayout: layout,
      blocksPerEpoch,
      accounts: { deployer: deployer.address, oracle: oracle.address },
    }
    if (options.out) await writeDevnetFile(options.out, file)
    log.info({ rpcUrl: anvil.rpcUrl, chainId: anvil.chainId, ...deployed.contracts, out: options.out }, 'devnet ready')

    const mine = async (blocks: number) => {
      await owner.request({ method: 'anvil_mine', params: [numberToHex(blocks), '0x0'] } as never)
    }
    return {
      rpcUrl: anvil.rpcUrl,
      chainId: anvil.chainId,
      config: devnetChainConfig(file),
      chain,
      contracts: deployed.contracts,
      precompiles: deployed.precompiles,
      file,
      accounts: { deployer, oracle, others },
      walletClient,
      deployGas: deployed.gasUsed,
      deployBlock,
      mine,
      async mineToNextEpoch() {
        const block = await getBlockNumber(owner, { cacheTime: 0 })
        const per = BigInt(blocksPerEpoch)
        const blocks = per - ((block - deployBlock) % per)
        await mine(Number(blocks)) // the latest block is now the new epoch's first
        return (block + blocks - deployBlock) / per
      },
      close: anvil.close,
    }
  } catch (e) {
    await anvil.close()
    throw e
  }
}
