import { generateKeyPair, privateKeyFromProtobuf, privateKeyToProtobuf } from '@libp2p/crypto/keys'
import type { PrivateKey } from '@libp2p/interface'

const DB = 'shardmesh'
const STORE = 'identity'

function request<T>(r: IDBRequest<T>): Promise<T> {
  return new Promise((resolve, reject) => {
    r.onsuccess = () => resolve(r.result)
    r.onerror = () => reject(r.error)
  })
}

async function openDb(): Promise<IDBDatabase> {
  const open = indexedDB.open(DB, 1)
  open.onupgradeneeded = () => open.result.createObjectStore(STORE)
  return request(open)
}

/**
 * The page's Ed25519 identity (its libp2p peer id), kept in IndexedDB so the peer id survives
 * reloads. `name` tells several identities of one origin apart (tests run two peers in one profile).
 */
export async function loadOrCreateBrowserIdentity(name = 'default'): Promise<PrivateKey> {
  const db = await openDb()
  try {
    const stored = await request(db.transaction(STORE, 'readonly').objectStore(STORE).get(name))
    if (stored instanceof Uint8Array || stored instanceof ArrayBuffer) return privateKeyFromProtobuf(new Uint8Array(stored))
    const key = await generateKeyPair('Ed25519')
    await request(db.transaction(STORE, 'readwrite').objectStore(STORE).put(privateKeyToProtobuf(key), name))
    return key
  } finally {
    db.close()
  }
}
