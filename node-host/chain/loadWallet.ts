import { createCipheriv, createDecipheriv, pbkdf2 as pbkdf2Cb, randomBytes, randomUUID, scrypt as scryptCb, timingSafeEqual } from 'node:crypto'
import { readFile, writeFile } from 'node:fs/promises'
import { promisify } from 'node:util'
import { scryptAsync } from '@noble/hashes/scrypt.js'
import { bytesToHex, concat, hexToBytes, keccak256, type Hex } from 'viem'
import { nonceManager, privateKeyToAccount, type PrivateKeyAccount } from 'viem/accounts'
import { z } from 'zod'

// Node wallets: a raw key from PLUMISE_PRIVATE_KEY, or a Web3 Secret Storage v3 keystore (the
// geth/Foundry/MetaMask-export format: scrypt or PBKDF2-SHA256, AES-128-CTR, keccak MAC).

const scrypt = promisify(scryptCb) as (password: Buffer, salt: Buffer, keylen: number, options: { N: number; r: number; p: number; maxmem: number }) => Promise<Buffer>
const pbkdf2 = promisify(pbkdf2Cb)

export class WalletError extends Error {
  constructor(message: string) {
    super(message)
    this.name = 'WalletError'
  }
}

const hex = (bytes: number) => z.string().regex(new RegExp(`^(0x)?[0-9a-fA-F]{${bytes * 2}}$`), `${bytes} bytes of hex`).transform((s) => s.replace(/^0x/, '').toLowerCase())

const keystoreSchema = z.object({
  version: z.literal(3),
  id: z.string().optional(),
  address: z.string().optional(),
  crypto: z.object({
    cipher: z.literal('aes-128-ctr'),
    cipherparams: z.object({ iv: hex(16) }),
    ciphertext: z.string().regex(/^(0x)?[0-9a-fA-F]+$/).transform((s) => s.replace(/^0x/, '').toLowerCase()),
    kdf: z.enum(['scrypt', 'pbkdf2']),
    kdfparams: z.union([
      z.object({ n: z.number().int().min(2), r: z.number().int().positive(), p: z.number().int().positive(), dklen: z.literal(32), salt: z.string().regex(/^(0x)?[0-9a-fA-F]*$/) }),
      z.object({ c: z.number().int().positive(), prf: z.literal('hmac-sha256'), dklen: z.literal(32), salt: z.string().regex(/^(0x)?[0-9a-fA-F]*$/) }),
    ]),
    mac: hex(32),
  }),
})

export type Keystore = z.input<typeof keystoreSchema>

async function deriveKey(password: string, params: z.infer<typeof keystoreSchema>['crypto']['kdfparams']): Promise<Buffer> {
  const salt = Buffer.from(params.salt.replace(/^0x/, ''), 'hex')
  if ('n' in params) {
    const { n: N, r, p } = params
    // OpenSSL (node:crypto) enforces RFC 7914's N < 2^(16r); geth's keystores (r = 8) meet it, the
    // spec's own test vector (r = 1, N = 2^18) does not: that takes the slower pure-JS scrypt.
    if (16 * r >= 53 || N < 2 ** (16 * r)) return scrypt(Buffer.from(password.normalize('NFKC')), salt, 32, { N, r, p, maxmem: 129 * N * r + 256 * r * p + (1 << 20) })
    return Buffer.from(await scryptAsync(password.normalize('NFKC'), salt, { N, r, p, dkLen: 32, maxmem: 2 ** 31 }))
  }
  return pbkdf2(Buffer.from(password.normalize('NFKC')), salt, params.c, 32, 'sha256')
}

const mac = (derived: Buffer, ciphertext: Buffer) => hexToBytes(keccak256(concat([bytesToHex(derived.subarray(16, 32)), bytesToHex(ciphertext)])))

/** The private key inside a v3 keystore. Throws WalletError on a wrong password or a malformed file. */
export async function decryptKeystore(keystore: unknown, password: string): Promise<Hex> {
  const parsed = keystoreSchema.safeParse(keystore)
  if (!parsed.success) throw new WalletError(`not a v3 keystore (aes-128-ctr, scrypt or pbkdf2): ${parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`)
  const c = parsed.data.crypto
  const derived = await deriveKey(password, c.kdfparams)
  const ciphertext = Buffer.from(c.ciphertext, 'hex')
  if (!timingSafeEqual(mac(derived, ciphertext), Buffer.from(c.mac, 'hex'))) throw new WalletError('keystore password is wrong (MAC mismatch)')
  const decipher = createDecipheriv('aes-128-ctr', derived.subarray(0, 16), Buffer.from(c.cipherparams.iv, 'hex'))
  const key = Buffer.concat([decipher.update(ciphertext), decipher.final()])
  return bytesToHex(key)
}

/**
 * Encrypts a private key as a v3 keystore (scrypt; geth's standard cost n = 2^18, r = 8, p = 1
 * unless given: about a second and 256 MiB, on purpose).
 */
export async function createKeystore(privateKey: Hex, password: string, kdf: { n?: number; r?: number; p?: number } = {}): Promise<Keystore> {
  const account = privateKeyToAccount(privateKey)
  const params = { n: kdf.n ?? 262_144, r: kdf.r ?? 8, p: kdf.p ?? 1, dklen: 32 as const, salt: randomBytes(32).toString('hex') }
  const derived = await deriveKey(password, params)
  const iv = randomBytes(16)
  const cipher = createCipheriv('aes-128-ctr', derived.subarray(0, 16), iv)
  const ciphertext = Buffer.concat([cipher.update(hexToBytes(privateKey)), cipher.final()])
  return {
    version: 3,
    id: randomUUID(),
    address: account.address.slice(2).toLowerCase(),
    crypto: {
      cipher: 'aes-128-ctr',
      cipherparams: { iv: iv.toString('hex') },
      ciphertext: ciphertext.toString('hex'),
      kdf: 'scrypt',
      kdfparams: params,
      mac: Buffer.from(mac(derived, ciphertext)).toString('hex'),
    },
  }
}

/** Writes a keystore readable by its owner only. */
export async function writeKeystore(path: string, keystore: Keystore): Promise<void> {
  await writeFile(path, JSON.stringify(keystore, null, 2) + '\n', { mode: 0o600 })
}

export type LoadWalletOptions = {
  /** A private key (a CLI flag); wins over everything else. */
  privateKey?: string
  /** A keystore file. @default env PLUMISE_KEYSTORE */
  keystore?: string
  /** The keystore's password. @default env PLUMISE_KEYSTORE_PASSWORD */
  password?: string
  /** @default process.env */
  env?: Record<string, string | undefined>
}

function accountOf(key: string, source: string): PrivateKeyAccount {
  const k = key.trim()
  if (!/^(0x)?[0-9a-fA-F]{64}$/.test(k)) throw new WalletError(`${source} must be 32 bytes of hex (64 hex digits, 0x optional)`)
  try {
    // One nonce sequence per account in this process: the Oracle (reports, page-wallet heartbeats)
    // and hosts (heartbeats, proofs) send concurrently from one account.
    return privateKeyToAccount((k.startsWith('0x') ? k : `0x${k}`) as Hex, { nonceManager })
  } catch {
    throw new WalletError(`${source} is not a valid secp256k1 private key`)
  }
}

/**
 * The host's wallet: `privateKey`, else PLUMISE_PRIVATE_KEY, else the keystore (`keystore` or
 * PLUMISE_KEYSTORE, with `password` or PLUMISE_KEYSTORE_PASSWORD).
 */
export async function loadWallet(options: LoadWalletOptions = {}): Promise<PrivateKeyAccount> {
  const env = options.env ?? process.env
  if (options.privateKey) return accountOf(options.privateKey, 'the private key')
  if (env.PLUMISE_PRIVATE_KEY) return accountOf(env.PLUMISE_PRIVATE_KEY, 'PLUMISE_PRIVATE_KEY')
  const path = options.keystore ?? env.PLUMISE_KEYSTORE
  if (!path) throw new WalletError('no wallet: set PLUMISE_PRIVATE_KEY, or PLUMISE_KEYSTORE (a v3 keystore file) and PLUMISE_KEYSTORE_PASSWORD')
  const password = options.password ?? env.PLUMISE_KEYSTORE_PASSWORD
  if (password === undefined) throw new WalletError(`keystore ${path} needs a password: set PLUMISE_KEYSTORE_PASSWORD`)
  let json: unknown
  try {
    json = JSON.parse(await readFile(path, 'utf8'))
  } catch (e) {
    throw new WalletError(`keystore ${path} is unreadable: ${(e as Error).message}`)
  }
  return accountOf(await decryptKeystore(json, password), `keystore ${path}`)
}
