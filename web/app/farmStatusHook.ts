import type { ContributorState } from '../contributor/createContributor.ts'

/**
 * What a page offers whoever drives it unattended (`shardmesh farm`): its contributor's state, read
 * as a heartbeat (a page whose main thread hangs stops answering), and a clean stop that tells the
 * Oracle it is leaving. Read-only state, stop and the binding signature only: nothing here can change what the page serves.
 */
export type FarmStatusHook = {
  state(): ContributorState
  stop(): Promise<void>
  /**
   * The tab's peer key signs its binding to the farm's wallet for this worker (agentBindingMessage
   * only: no other message can be signed here), so the farm registers it and the Oracle credits
   * the tab's work there.
   */
  signAgentBinding(chainId: number, wallet: `0x${string}`): Promise<{ peerId: string; signature: `0x${string}` }>
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
