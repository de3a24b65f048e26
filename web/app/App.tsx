import { Suspense, lazy, useEffect, useState } from 'react'
import { useAppConfig } from './hooks/useAppConfig.ts'
import { useChat } from './hooks/useChat.ts'
import { useContributor } from './hooks/useContributor.ts'
import { useNetwork } from './hooks/useNetwork.ts'
import { ChatView } from './views/ChatView.tsx'
import { ContributeView } from './views/ContributeView.tsx'
import { NetworkView } from './views/NetworkView.tsx'

const VIEWS = ['contribute', 'chat', 'network', 'wallet'] as const
type View = (typeof VIEWS)[number]
const LABELS: Record<View, string> = { contribute: 'Contribute', chat: 'Chat', network: 'Network', wallet: 'Wallet' }
// wagmi and react-query load with the Wallet view, not with the app (its initial JS budget)
const WalletView = lazy(() => import('./views/WalletView.tsx'))

const viewFromHash = (): View => {
  const h = window.location.hash.slice(1)
  return (VIEWS as readonly string[]).includes(h) ? (h as View) : 'contribute'
}

/** The app shell: three views over hooks that hold the state; views only read it. */
export function App() {
  const [view, setView] = useState<View>(viewFromHash)
  useEffect(() => {
    const onHash = () => setView(viewFromHash())
    window.addEventListener('hashchange', onHash)
    return () => window.removeEventListener('hashchange', onHash)
  }, [])
  const { config, error } = useAppConfig()
  const contributor = useContributor(config)
  const chat = useChat(config)
  const net = useNetwork(config)
  const serving = contributor.state.phase === 'serving'

  return (
    <div className="shell">
      <header>
        <h1>
          shardmesh <span className={serving ? 'badge on' : 'badge'}>{serving ? 'contributing' : 'idle'}</span>
        </h1>
        <nav aria-label="views">
          {VIEWS.map((v) => (
            <a key={v} href={`#${v}`} aria-current={view === v ? 'page' : undefined}>
              {LABELS[v]}
            </a>
          ))}
        </nav>
      </header>
      <main>
        {error && (
          <p role="alert" className="error">
            {error}
          </p>
        )}
        {config && config.chain === null && view === 'contribute' && <p className="note">This network runs without a chain: earnings are booked by the Oracle only.</p>}
        {view === 'contribute' && <ContributeView c={contributor} model={config?.models[0]?.name} />}
        {view === 'chat' && <ChatView chat={chat} />}
        {view === 'network' && <NetworkView net={net} />}
        {view === 'wallet' && config && (
          <Suspense fallback={<p className="note">Loading the wallet view…</p>}>
            <WalletView config={config} />
          </Suspense>
        )}
      </main>
      <footer>
        {config ? (
          <>
            Oracle <span className="mono">{config.oracle}</span>
            {config.chain && (
              <>
                {' '}
                · chain {config.chain.id} at <span className="mono">{config.chain.rpcUrl}</span>
              </>
            )}
          </>
        ) : (
          'Loading the network configuration…'
        )}
      </footer>
    </div>
  )
}
