/**
 * The engine's module Web Worker: owns onnxruntime-web and every shard session, so inference never
 * blocks the page (where libp2p lives). Speaks `EngineRequest` / `EngineResponse`.
 */
import { createEngineHost } from './engineHost.ts'
import { serializeError, transferablesOf, type EngineResponse } from './engineMessages.ts'
import { webRuntime } from './webRuntime.ts'

const scope = globalThis as unknown as DedicatedWorkerGlobalScope
// Hidden states and logits move to the page (transferred), not copied.
const post = (message: EngineResponse) => scope.postMessage(message, transferablesOf(message))
const host = createEngineHost({ runtime: webRuntime(), post })

scope.addEventListener('message', (event: MessageEvent) => host.handle(event.data))
// A safety net: the host catches its own failures, so this reports bugs instead of losing them.
scope.addEventListener('unhandledrejection', (event: PromiseRejectionEvent) => {
  event.preventDefault()
  post({ type: 'error', id: null, error: serializeError(event.reason) })
})
