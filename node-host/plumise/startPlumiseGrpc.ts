import type { ShardSession } from '../../shared/engine/shardSession.ts'
import type { ModelSource } from '../../shared/model/modelSource.ts'
import { loadTokenizer, type TextTokenizer } from '../../shared/model/tokenizer.ts'
import type { Logger } from '../../shared/logger.ts'
import { createPlumiseServer, type PlumiseServer } from './plumiseServer.ts'

export type StartPlumiseGrpcInit = {
  source: ModelSource
  /** The shard the host serves now (it may be reassigned while the server runs). */
  shard: () => ShardSession | undefined
  eosTokenIds: number[]
  /** Answered by Ping (the wallet, or the peer id without one). */
  address: string
  port: number
  host: string
  /** The next node in the Plumise topology, and the ones after it (for streams this host starts). */
  next?: () => string | undefined
  after?: () => string[]
  logger: Logger
}

/** The Plumise gRPC InferencePipeline beside a node host's libp2p service (`--grpc-port`). */
export async function startPlumiseGrpc(init: StartPlumiseGrpcInit): Promise<PlumiseServer> {
  // Token text is a nicety (generated_text, stream text); a checkpoint without a tokenizer still serves.
  let tokenizer: TextTokenizer | undefined
  if (await init.source.has('tokenizer.json')) tokenizer = await loadTokenizer(init.source)
  return createPlumiseServer({
    shard: init.shard,
    model: init.source.name,
    address: init.address,
    next: init.next,
    after: init.after,
    tokenizer,
    eosTokenIds: init.eosTokenIds,
    port: init.port,
    host: init.host,
    logger: init.logger,
  })
}
