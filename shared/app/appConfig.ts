import { z } from 'zod'

const address = z.string().regex(/^0x[0-9a-fA-F]{40}$/)

/**
 * What the contributor app learns from `GET /config.json` beside it: one build works against any
 * network. The app server fills it in from its flags, the Oracle's topology and the chain's
 * addresses file; the page validates it with this schema before trusting it.
 */
export const appConfigSchema = z.object({
  /** The Oracle's own base URL: the Orban channel (WebSocket) is opened on it. */
  oracle: z.string().url(),
  /**
   * Base URL for the Oracle's HTTP routes (topology, events, model files) as the page should fetch
   * them: the app server's same-origin proxy (`/oracle`), since the Oracle sends no CORS headers.
   */
  oracleHttp: z.string(),
  /** Models the Oracle assigns, each with the folder URL the page loads its files from. */
  models: z.array(z.object({ name: z.string(), url: z.string() })),
  /** Relays' `/ws` multiaddrs (with `/p2p/…`): hosts the page dials and reserves a circuit slot on. */
  relays: z.array(z.string()),
  /** The chain contributors register and are rewarded on; null when the network runs without one. */
  chain: z
    .object({
      id: z.number().int().positive(),
      rpcUrl: z.string().url(),
      contracts: z.object({ agentRegistry: address, rewardPool: address }),
    })
    .nullable(),
  /** The origin's OpenAI-compatible API, when the network has one. */
  api: z.string().url().nullable(),
})

export type AppConfig = z.infer<typeof appConfigSchema>
