import { useEffect, useState } from 'react'
import type { AppConfig } from '../../../shared/app/appConfig.ts'
import { subscribeNetwork, type NetworkSnapshot } from '../../network/subscribeNetwork.ts'

/** The network as the Oracle's event stream describes it, live (no polling). */
export function useNetwork(config: AppConfig | undefined): NetworkSnapshot {
  const [snapshot, setSnapshot] = useState<NetworkSnapshot>({ connected: false, topologies: {} })
  useEffect(() => (config ? subscribeNetwork(config, setSnapshot) : undefined), [config])
  return snapshot
}
