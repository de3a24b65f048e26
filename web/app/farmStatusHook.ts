import type { ContributorState } from '../contributor/createContributor.ts'

/**
 * What a page offers whoever drives it unattended (`shardmesh farm`): its contributor's state, read
 * as a heartbeat (a page whose main thread hangs stops answering), and a clean stop that tells the
 * Oracle it is leaving. Read-only state and stop only: nothing here can change what the page serves.
 */
export type FarmStatusHook = {
  state(): ContributorState
  stop(): Promise<void>
}

declare global {
  interface Window {
    shardmeshFarm?: FarmStatusHook
  }
}

export function exposeFarmStatus(hook: FarmStatusHook): () => void {
  window.shardmeshFarm = hook
  return () => {
    if (window.shardmeshFarm === hook) delete window.shardmeshFarm
  }
}
