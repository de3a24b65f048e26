import { useCallback, useRef, useState } from 'react'
import type { AppConfig } from '../../../shared/app/appConfig.ts'
import type { ChatReply, ChatSettings, PageChat } from '../../chat/createPageChat.ts'
import { NoRouteError } from '../../../shared/mesh/planRoute.ts'
import { RelayUnreachableError } from '../../mesh/relayUnreachableError.ts'

export type ChatTurn = { prompt: string; text: string; reply?: ChatReply; error?: string; streaming: boolean; tokenIds: number[] }

export type UseChat = {
  turns: ChatTurn[]
  settings: ChatSettings
  setSettings(s: ChatSettings): void
  busy: boolean
  send(prompt: string): void
  cancel(): void
}

/** Chat state: the page is the origin; tokens stream in as the last shard sends them. */
export function useChat(config: AppConfig | undefined): UseChat {
  const [turns, setTurns] = useState<ChatTurn[]>([])
  const [settings, setSettings] = useState<ChatSettings>({ temperature: 0, topP: 1, maxTokens: 32 })
  const [busy, setBusy] = useState(false)
  const chat = useRef<Promise<PageChat> | undefined>(undefined)
  const abort = useRef<AbortController | undefined>(undefined)

  const update = (i: number, patch: (t: ChatTurn) => Partial<ChatTurn>) => setTurns((ts) => ts.map((t, j) => (j === i ? { ...t, ...patch(t) } : t)))

  const send = useCallback(
    (prompt: string) => {
      if (!config || busy || !prompt.trim()) return
      const model = config.models[0]?.name
      let index = 0
      setTurns((ts) => ((index = ts.length), [...ts, { prompt, text: '', streaming: true, tokenIds: [] }]))
      if (!model) return update(index, () => ({ streaming: false, error: 'the Oracle serves no model' }))
      setBusy(true)
      const controller = new AbortController()
      abort.current = controller
      chat.current ??= import('../../chat/createPageChat.ts').then((m) => m.createPageChat(config, model))
      chat.current
        .then((c) => c.complete(prompt, settings, (text, id) => update(index, (t) => ({ text: t.text + text, tokenIds: id >= 0 ? [...t.tokenIds, id] : t.tokenIds })), controller.signal))
        .then(
          (reply) => update(index, () => ({ reply, streaming: false })),
          (e: Error) => update(index, () => ({ streaming: false, error: describeChatError(e) })),
        )
        .finally(() => setBusy(false))
    },
    [config, busy, settings],
  )

  return { turns, settings, setSettings, busy, send, cancel: () => abort.current?.abort(new Error('cancelled')) }
}

function describeChatError(e: Error): string {
  if (e instanceof NoRouteError) return `no route through the network covers every layer yet: ${e.message}`
  if (e instanceof RelayUnreachableError) return `this tab could not reach the network: ${e.message}`
  return e.message
}
