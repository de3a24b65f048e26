import { http, type HttpTransport, type HttpTransportConfig } from 'viem'

/** How anvil words a read of a block whose state it no longer keeps. */
const PRUNED_STATE = 'BlockOutOfRangeError'

/**
 * A fetch for viem's http transport that asks again when anvil refused a JSON-RPC call with
 * BlockOutOfRangeError. npm start's devnet runs anvil with --prune-history (no historical state,
 * so its memory stays flat): a read at "latest" that races the next block (mined every second)
 * is refused, about 1 call in 1,600 measured; asked again it reads the new block. Every other
 * answer, and every answer of a real chain, passes through untouched.
 */
export function retryPrunedState(fetchFn: typeof fetch = globalThis.fetch, attempts = 3): typeof fetch {
  return async (input, init) => {
    for (let i = 1; ; i++) {
      const res = await fetchFn(input, init)
      if (i >= attempts || !res.ok) return res
      if (!(await res.clone().text()).includes(PRUNED_STATE)) return res
    }
  }
}

/** viem's http transport with retryPrunedState: what every chain client of the project uses. */
export function chainHttp(url?: string, config: HttpTransportConfig = {}): HttpTransport {
  return http(url, { ...config, fetchFn: retryPrunedState(config.fetchFn ?? globalThis.fetch) })
}
