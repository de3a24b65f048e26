import type { GenerateResult } from '../../shared/engine/generate.ts'
import type { ShardOutput } from '../../shared/engine/shardSession.ts'
import type { LayerRange } from '../../shared/model/shardGraph.ts'
import { EngineWorkerCrashedError, EngineWorkerError } from './engineErrors.ts'
import {
  REPLY_TYPE,
  type DisposeParams,
  type DropParams,
  type EngineCall,
  type EngineReply,
  type EngineRequest,
  type EngineResponse,
  type ForwardParams,
  type GenerateParams,
  type LoadParams,
  type LoadResult,
  transferablesOf,
} from './engineMessages.ts'

export type CallOptions = { signal?: AbortSignal }

export type LoadOptions = CallOptions & {
  /** Per shard: `done` of `total` steps (tensor reads and graph pieces, then the session). */
  onProgress?: (range: LayerRange, done: number, total: number) => void
}

export type GenerateOptions = CallOptions & {
  /** Each token as it is made; needs no `streamTokens` in the parameters. */
  onToken?: (tokenId: number, index: number) => void
}

/** The page's handle on the engine worker: one promise per request. */
export type EngineClient = {
  load(params: LoadParams, options?: LoadOptions): Promise<LoadResult>
  generate(params: GenerateParams, options?: GenerateOptions): Promise<GenerateResult>
  /** Runs one shard for a session: token ids in on the first shard, else a hidden state. */
  forward(params: ForwardParams, options?: CallOptions): Promise<ShardOutput>
  drop(params: DropParams): Promise<void>
  dispose(params?: DisposeParams): Promise<void>
  /** Stops the worker; pending calls fail with EngineWorkerCrashedError. */
  terminate(): void
}

export type EngineClientInit = {
  /** @default a new module worker running `engineWorker.ts` */
  worker?: Worker
  /** Worker errors that belong to no request (bugs): @default console.error */
  onFault?: (error: Error) => void
}

type Pending = {
  reply: EngineResponse['type']
  resolve(value: EngineResponse): void
  reject(error: Error): void
  onEvent?(message: EngineResponse): void
}

/** The engine worker, bundled by Vite from this URL pattern. */
export function createEngineWorker(): Worker {
  return new Worker(new URL('./engineWorker.ts', import.meta.url), { type: 'module', name: 'shardmesh-engine' })
}

export function createEngineClient(init: EngineClientInit = {}): EngineClient {
  const worker = init.worker ?? createEngineWorker()
  const onFault = init.onFault ?? ((e: Error) => console.error(e))
  const pending = new Map<number, Pending>()
  let nextId = 1
  let crashed: Error | null = null

  const failAll = (error: Error) => {
    crashed = error
    for (const p of pending.values()) p.reject(error)
    pending.clear()
  }

  worker.addEventListener('message', (event: MessageEvent<EngineResponse>) => {
    const message = event.data
    if (message.type === 'error' && message.id === null) return onFault(new EngineWorkerError(message.error))
    const p = pending.get(message.id!)
    if (!p) return
    if (message.type === 'progress' || message.type === 'token') return p.onEvent?.(message)
    pending.delete(message.id!)
    if (message.type === 'error') p.reject(new EngineWorkerError(message.error))
    else if (message.type === p.reply) p.resolve(message)
    else p.reject(new EngineWorkerError({ name: 'EngineProtocolError', message: `expected "${p.reply}", got "${message.type}"` }))
  })
  worker.addEventListener('error', (event: ErrorEvent) => failAll(new EngineWorkerCrashedError(event.message || 'the worker script failed to load')))
  worker.addEventListener('messageerror', () => onFault(new EngineWorkerCrashedError('a reply could not be deserialized')))

  const call = <K extends EngineCall>(
    type: K,
    params: Extract<EngineRequest, { type: K }>['params'],
    options: CallOptions & { onEvent?: (message: EngineResponse) => void } = {},
  ): Promise<EngineReply[K]> => {
    if (crashed) return Promise.reject(crashed)
    const id = nextId++
    const { signal } = options
    return new Promise<EngineReply[K]>((resolve, reject) => {
      if (signal?.aborted) return reject(signal.reason)
      const onAbort = () => worker.postMessage({ type: 'abort', id: nextId++, target: id } satisfies EngineRequest)
      signal?.addEventListener('abort', onAbort, { once: true })
      const done = () => signal?.removeEventListener('abort', onAbort)
      pending.set(id, {
        reply: REPLY_TYPE[type],
        resolve: (m) => (done(), resolve(m as EngineReply[K])),
        reject: (e) => (done(), reject(e)),
        onEvent: options.onEvent,
      })
      try {
        const request = { type, id, params } as EngineRequest
        // A hidden state going in is moved to the worker, not copied: the caller is done with it.
        worker.postMessage(request, transferablesOf(request))
      } catch (e) {
        pending.delete(id)
        done()
        reject(e)
      }
    })
  }

  return {
    async load(params, options = {}) {
      const onEvent = (m: EngineResponse) => m.type === 'progress' && options.onProgress?.(m.range, m.done, m.total)
      return (await call('load', params, { signal: options.signal, onEvent })).result
    },
    async generate(params, options = {}) {
      const onEvent = (m: EngineResponse) => m.type === 'token' && options.onToken?.(m.tokenId, m.index)
      const streamTokens = params.streamTokens ?? options.onToken !== undefined
      return (await call('generate', { ...params, streamTokens }, { signal: options.signal, onEvent })).result
    },
    async forward(params, options = {}) {
      return (await call('forward', params, options)).result
    },
    async drop(params) {
      await call('drop', params)
    },
    async dispose(params = {}) {
      await call('dispose', params)
    },
    terminate() {
      worker.terminate()
      failAll(new EngineWorkerCrashedError('terminated'))
    },
  }
}
