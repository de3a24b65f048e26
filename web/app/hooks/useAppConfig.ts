import { useEffect, useState } from 'react'
import type { AppConfig } from '../../../shared/app/appConfig.ts'
import { loadAppConfig } from '../loadAppConfig.ts'

export type AppConfigState = { config?: AppConfig; error?: string }

/** The network's configuration from `/config.json` (with `?oracle=` applied). */
export function useAppConfig(): AppConfigState {
  const [state, setState] = useState<AppConfigState>({})
  useEffect(() => {
    loadAppConfig().then(
      (config) => setState({ config }),
      (e: Error) => setState({ error: e.message }),
    )
  }, [])
  return state
}
