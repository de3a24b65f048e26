/**
 * The engine test page: exposes the engine client on `window` for Playwright (e2e/) to drive.
 * Not the app; the React app comes later.
 */
import { createEngineClient, createEngineWorker, type EngineClient } from '../../web/engine/engineClient.ts'
import { requestGpuAdapterInfo, type GpuAdapterInfo } from '../../web/engine/gpuAdapter.ts'

/** What `window.shardmesh` holds on the test page. */
export type EngineTestApi = {
  /** A client of this page's engine worker, created on load. */
  engine: EngineClient
  createEngineClient: typeof createEngineClient
  /** A bare engine worker, to speak the raw message protocol. */
  createEngineWorker: typeof createEngineWorker
  requestGpuAdapterInfo: () => Promise<GpuAdapterInfo | null>
}

declare global {
  interface Window {
    shardmesh?: EngineTestApi
  }
}

window.shardmesh = { engine: createEngineClient(), createEngineClient, createEngineWorker, requestGpuAdapterInfo }
document.getElementById('status')!.textContent = 'ready'
