import { useCallback, useEffect, useRef, useState, useSyncExternalStore } from 'react'
import type { AppConfig } from '../../../shared/app/appConfig.ts'
import type { Contributor, ContributorState } from '../../contributor/createContributor.ts'
import { readCapabilities, type Capabilities } from '../../contributor/readCapabilities.ts'
import { loadContributeChoice, saveContributeChoice } from '../contributeChoice.ts'
import { exposeFarmStatus } from '../farmStatusHook.ts'
import { signPageAgentBinding } from '../../agent/pageAgentBinding.ts'

const IDLE: ContributorState = { phase: 'idle', peers: 0, sessions: 0, tokensForwarded: 0, steps: 0, msPerStep: null, rate: [], earningsUsd: 0, earningsRecords: 0, phaseAtMs: {} }
const noop = () => () => {}

export type UseContributor = {
  capabilities?: Capabilities
  capabilitiesError?: string
  state: ContributorState
  /** MB offered to the Oracle (the cap the contributor sets). */
  memoryMb: number | undefined
  setMemoryMb(mb: number): void
  start(): void
  stop(): void
}

/**
 * The Contribute view's state: the tab's capabilities, the contributor (loaded on first use, with
 * libp2p and the engine), and the remembered choice: a reload resumes contributing.
 */
export function useContributor(config: AppConfig | undefined): UseContributor {
  const [capabilities, setCapabilities] = useState<Capabilities>()
  const [capabilitiesError, setCapabilitiesError] = useState<string>()
  const [contributor, setContributor] = useState<Contributor>()
  const [memoryMb, setMemoryMbState] = useState<number | undefined>(() => loadContributeChoice().memoryMb)
  const loading = useRef<Promise<Contributor> | undefined>(undefined)
  const state = useSyncExternalStore(contributor?.subscribe ?? noop, contributor?.state ?? (() => IDLE))

  useEffect(() => {
    readCapabilities().then(setCapabilities, (e: Error) => setCapabilitiesError(`reading this tab's capabilities failed: ${e.message}`))
  }, [])

  const getContributor = useCallback(async () => {
    if (!config) throw new Error('the network configuration is not loaded yet')
    // libp2p, the engine client and the Orban agent load only when the person contributes.
    loading.current ??= import('../../contributor/createContributor.ts').then((m) => {
      const c = m.createContributor(config)
      setContributor(c)
      return c
    })
    return loading.current
  }, [config])

  const begin = useCallback(
    (mb: number | undefined) => {
      if (!config || !capabilities) return
      const model = config.models[0]?.name
      if (!model) return
      void getContributor().then((c) => c.start({ model, device: capabilities.backend, memoryBytes: mb ? mb * 1024 * 1024 : undefined }))
    },
    [config, capabilities, getContributor],
  )

  // A farm (`shardmesh farm`) polls this as the page's heartbeat and stops it cleanly on shutdown.
  useEffect(() => exposeFarmStatus({ state: () => contributor?.state() ?? IDLE, stop: async () => contributor?.stop(), signAgentBinding: signPageAgentBinding }), [contributor])

  // A reload resumes contributing when the person left it on.
  const resumed = useRef(false)
  useEffect(() => {
    if (resumed.current || !config || !capabilities) return
    resumed.current = true
    if (loadContributeChoice().contributing) begin(loadContributeChoice().memoryMb)
  }, [config, capabilities, begin])

  return {
    capabilities,
    capabilitiesError,
    state,
    memoryMb,
    setMemoryMb: (mb) => {
      setMemoryMbState(mb)
      saveContributeChoice({ ...loadContributeChoice(), memoryMb: mb })
    },
    start: () => {
      saveContributeChoice({ ...loadContributeChoice(), contributing: true, memoryMb })
      begin(memoryMb)
    },
    stop: () => {
      saveContributeChoice({ ...loadContributeChoice(), contributing: false })
      void contributor?.stop()
    },
  }
}
