import assert from 'node:assert/strict'
import { mkdtemp, rm, stat } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, test } from 'node:test'
import { generatePrivateKey, privateKeyToAddress } from 'viem/accounts'
import { createKeystore, decryptKeystore, loadWallet, WalletError, writeKeystore } from './loadWallet.ts'

const dirs: string[] = []
after(() => Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true }))))

// The two test vectors of the Web3 Secret Storage Definition (password "testpassword").
const SECRET = '0x7a28b5ba57c53603b0b07b56bba752f7784bf506fa95edc395f5cf6c7514fe9d'
const SCRYPT_VECTOR = {
  crypto: {
    cipher: 'aes-128-ctr',
    cipherparams: { iv: '83dbcc02d8ccb40e466191a123791e0e' },
    ciphertext: 'd172bf743a674da9cdad04534d56926ef8358534d458fffccd4e6ad2fbde479c',
    kdf: 'scrypt',
    kdfparams: { dklen: 32, n: 262144, p: 8, r: 1, salt: 'ab0c7876052600dd703518d6fc3fe8984592145b591fc8fb5c6d43190334ba19' },
    mac: '2103ac29920d71da29f15d75b4a16dbe95cfd7ff8faea1056c33131d846e3097',
  },
  id: '3198bc9c-6672-5ab3-d995-4942343ae5b6',
  version: 3,
}
const PBKDF2_VECTOR = {
  crypto: {
    cipher: 'aes-128-ctr',
    cipherparams: { iv: '6087dab2f9fdbbfaddc31a909735c1e6' },
    ciphertext: '5318b4d5bcd28de64ee5559e671353e16f075ecae9f99c7a79a38af5f869aa46',
    kdf: 'pbkdf2',
    kdfparams: { c: 262144, dklen: 32, prf: 'hmac-sha256', salt: 'ae3cd4e7013836a3df6bd7241b12db061dbe2c6785853cce422d148a624ce0bd' },
    mac: '517ead924a9d0dc3124507e3393d175ce3ff7c1e96529c6c555ce9e51205e9b2',
  },
  id: '3198bc9c-6672-5ab3-d995-4942343ae5b6',
  version: 3,
}

test('decrypts the Web3 Secret Storage test vectors (scrypt and PBKDF2)', async () => {
  assert.equal(await decryptKeystore(SCRYPT_VECTOR, 'testpassword'), SECRET)
  assert.equal(await decryptKeystore(PBKDF2_VECTOR, 'testpassword'), SECRET)
  await assert.rejects(decryptKeystore(PBKDF2_VECTOR, 'wrong'), /password is wrong/)
  await assert.rejects(decryptKeystore({ ...PBKDF2_VECTOR, crypto: { ...PBKDF2_VECTOR.crypto, cipher: 'aes-128-cbc' } }, 'testpassword'), WalletError)
})

test('a created keystore round-trips through a 0600 file and loadWallet', async () => {
  const key = generatePrivateKey()
  const keystore = await createKeystore(key, 'hunter2', { n: 1024 })
  assert.equal(keystore.address, privateKeyToAddress(key).slice(2).toLowerCase())
  assert.equal(keystore.crypto.kdf, 'scrypt')
  const dir = await mkdtemp(join(tmpdir(), 'shardmesh-wallet-'))
  dirs.push(dir)
  const path = join(dir, 'key.json')
  await writeKeystore(path, keystore)
  assert.equal((await stat(path)).mode & 0o777, 0o600)
  const account = await loadWallet({ env: { PLUMISE_KEYSTORE: path, PLUMISE_KEYSTORE_PASSWORD: 'hunter2' } })
  assert.equal(account.address, privateKeyToAddress(key))
  await assert.rejects(loadWallet({ keystore: path, password: 'nope', env: {} }), /password is wrong/)
  await assert.rejects(loadWallet({ keystore: path, env: {} }), /needs a password/)
  await assert.rejects(loadWallet({ keystore: join(dir, 'missing.json'), password: 'x', env: {} }), /unreadable/)
})

test('PLUMISE_PRIVATE_KEY wins over a keystore; bad keys and no wallet are clear errors', async () => {
  const key = generatePrivateKey()
  assert.equal((await loadWallet({ env: { PLUMISE_PRIVATE_KEY: key.slice(2), PLUMISE_KEYSTORE: '/nonexistent' } })).address, privateKeyToAddress(key))
  assert.equal((await loadWallet({ privateKey: key, env: {} })).address, privateKeyToAddress(key))
  await assert.rejects(loadWallet({ env: { PLUMISE_PRIVATE_KEY: '0x1234' } }), /PLUMISE_PRIVATE_KEY must be 32 bytes/)
  await assert.rejects(loadWallet({ env: { PLUMISE_PRIVATE_KEY: '0x' + '00'.repeat(32) } }), /not a valid secp256k1 private key/)
  await assert.rejects(loadWallet({ env: {} }), /no wallet: set PLUMISE_PRIVATE_KEY/)
})
