import { useState } from 'react'
import type { UseChat } from '../hooks/useChat.ts'
import { shortId } from '../format.ts'

export function ChatView({ chat }: { chat: UseChat }) {
  const [prompt, setPrompt] = useState('The pipeline splits the model into layer ranges and')
  const s = chat.settings
  return (
    <section aria-labelledby="chat-title" className="view">
      <h2 id="chat-title">Chat with the network</h2>
      <p className="lede">This tab is the origin: it tokenizes, picks a route of peers that covers every layer, and tokens come back to it over libp2p.</p>
      <div className="card">
        <form
          onSubmit={(e) => {
            e.preventDefault()
            chat.send(prompt)
          }}
        >
          <label className="field">
            <span>Prompt</span>
            <textarea value={prompt} onChange={(e) => setPrompt(e.target.value)} rows={3} aria-label="Prompt" />
          </label>
          <div className="settings">
            <label>
              Temperature
              <input type="number" min={0} max={2} step={0.1} value={s.temperature} onChange={(e) => chat.setSettings({ ...s, temperature: Number(e.target.value) })} />
            </label>
            <label>
              Top-p
              <input type="number" min={0.05} max={1} step={0.05} value={s.topP} onChange={(e) => chat.setSettings({ ...s, topP: Number(e.target.value) })} />
            </label>
            <label>
              Max tokens
              <input type="number" min={1} max={1024} step={1} value={s.maxTokens} onChange={(e) => chat.setSettings({ ...s, maxTokens: Math.max(1, Number(e.target.value)) })} />
            </label>
          </div>
          <div className="actions">
            <button type="submit" className="primary" disabled={chat.busy}>
              Send
            </button>
            {chat.busy && (
              <button type="button" onClick={chat.cancel}>
                Cancel
              </button>
            )}
          </div>
        </form>
      </div>
      <ol className="turns">
        {chat.turns.map((t, i) => (
          <li key={i} className="card turn" data-testid="turn" data-done={!t.streaming} data-token-ids={t.reply ? JSON.stringify(t.reply.tokenIds) : undefined}>
            <p className="prompt">{t.prompt}</p>
            <p className="completion" aria-live="polite">
              {t.text}
              {t.streaming && <span className="cursor">▍</span>}
            </p>
            {t.error && (
              <p role="alert" className="error">
                {t.error}
              </p>
            )}
            {t.reply && (
              <div className="route">
                <p>
                  {t.reply.tokenIds.length} tokens in {(t.reply.ms / 1000).toFixed(2)} s
                  {t.reply.tokensPerSecond !== null && <> · <strong data-testid="tps">{t.reply.tokensPerSecond.toFixed(1)} tokens/s</strong></>}
                  {t.reply.failovers > 0 && ` · ${t.reply.failovers} failover(s)`}
                </p>
                <ol className="hops" aria-label="route">
                  <li>this tab (origin)</li>
                  {t.reply.route.map((h) => (
                    <li key={h.peerId}>
                      <span className="mono">{h.self ? 'this tab' : shortId(h.peerId)}</span> layers [{h.start}, {h.end}) · {h.ms !== null ? `${h.ms.toFixed(1)} ms per step (${(h.computeMs ?? 0).toFixed(1)} ms compute)` : 'no timing'}
                    </li>
                  ))}
                </ol>
              </div>
            )}
          </li>
        ))}
      </ol>
    </section>
  )
}
