import { peerIdFromString } from '@libp2p/peer-id'
import type { PeerId } from '@libp2p/interface'
import { multiaddr, type Multiaddr } from '@multiformats/multiaddr'

/** Longest multiaddr string taken from a peer (frames, info answers). */
export const MAX_ADDRESS_LENGTH = 256
/** Most addresses taken for one peer (a page behind several relays has a circuit and a WebRTC address per relay). */
export const MAX_ADDRESSES_PER_PEER = 16

/** A hop or peer address this peer will not dial: not a `/p2p/<peer>` address of the named peer, or a DNS name. */
export class UnplannedAddressError extends Error {
  constructor(message: string) {
    super(message)
    this.name = 'UnplannedAddressError'
  }
}

/** What a peer named by someone else is dialled by: its peer id (authenticated by Noise), addresses only as hints for it. */
export type DialPlan = { peerId: PeerId; hints: Multiaddr[] }

// DNS names resolve to wherever their owner points them (internal hosts, metadata endpoints).
const DNS = new Set(['dns', 'dns4', 'dns6', 'dnsaddr'])

function parsePeerId(id: string): PeerId {
  try {
    return peerIdFromString(id)
  } catch {
    throw new UnplannedAddressError(`"${id.slice(0, 80)}" is not a peer id`)
  }
}

/** Parses one address and checks it ends in `/p2p/<peerId>` with no DNS name in it. */
function parseHint(address: string, peerId: string): Multiaddr {
  if (address.length > MAX_ADDRESS_LENGTH) throw new UnplannedAddressError(`address of ${address.length} characters (at most ${MAX_ADDRESS_LENGTH})`)
  let ma: Multiaddr
  try {
    ma = multiaddr(address)
  } catch {
    throw new UnplannedAddressError(`"${address.slice(0, 80)}" is not a multiaddr`)
  }
  const parts = ma.getComponents()
  if (parts.some((c) => DNS.has(c.name))) throw new UnplannedAddressError(`"${address}" names a DNS host; only /p2p/<peer> addresses are dialled`)
  const last = parts.at(-1)
  if (last?.name !== 'p2p' || last.value !== peerId) throw new UnplannedAddressError(`"${address}" does not end in /p2p/${peerId}`)
  return ma
}

/**
 * The dial plan for a peer another peer named (a next hop in an open frame): its peer id, and its
 * addresses as hints only when every one ends in `/p2p/<that peer>` and names no DNS host. Throws
 * UnplannedAddressError otherwise: such a frame is refused, not partly followed.
 */
export function planDial(peer: { peerId: string; multiaddrs: readonly string[] }): DialPlan {
  const peerId = parsePeerId(peer.peerId)
  if (peer.multiaddrs.length > MAX_ADDRESSES_PER_PEER) throw new UnplannedAddressError(`${peer.multiaddrs.length} addresses for one peer (at most ${MAX_ADDRESSES_PER_PEER})`)
  return { peerId, hints: peer.multiaddrs.map((a) => parseHint(a, peer.peerId)) }
}

/**
 * A plain relay circuit gives a limited connection, on which the forward protocol cannot open
 * streams: such addresses go last, so a bound on the count never leaves only them.
 */
const limitedRank = (a: string) => (a.includes('/p2p-circuit') && !a.includes('/webrtc') ? 1 : 0)

/**
 * A peer's addresses as this peer passes them on (route hops, the peer table): each made to end in
 * `/p2p/<peerId>`; addresses of other peers, DNS names, overlong and unparsable ones dropped; direct
 * and WebRTC ones before plain relay circuits; at most MAX_ADDRESSES_PER_PEER.
 */
export function p2pAddresses(peerId: string, addresses: readonly string[]): string[] {
  const out: string[] = []
  for (const a of addresses.slice(0, 4 * MAX_ADDRESSES_PER_PEER)) {
    try {
      const ma = multiaddr(a)
      const last = ma.getComponents().at(-1)
      const full = last?.name === 'p2p' ? a : `${a}/p2p/${peerId}`
      parseHint(full, peerId)
      if (!out.includes(full)) out.push(full)
    } catch {
      // not a usable address for this peer: left out
    }
  }
  return out.sort((a, b) => limitedRank(a) - limitedRank(b)).slice(0, MAX_ADDRESSES_PER_PEER)
}
