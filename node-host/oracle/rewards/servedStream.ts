import type { ServerResponse } from 'node:http'
import { SERVED_EVENT } from '../../../shared/oracle/servedThroughput.ts'
import type { ServedLedger } from './servedLedger.ts'

/**
 * Adds the ledger's `network:served` events to an open event stream (`/api/v1/pipeline/events`):
 * the current snapshot at once, then each one the ledger emits, until the stream closes.
 */
export function streamServed(ledger: Pick<ServedLedger, 'events' | 'snapshot'>, res: ServerResponse): void {
  const open = () => !res.writableEnded && !res.destroyed
  const send = (data: unknown) => open() && res.write(`event: ${SERVED_EVENT}\ndata: ${JSON.stringify(data)}\n\n`)
  send(ledger.snapshot())
  const onServed = (s: unknown) => send(s)
  ledger.events.on('served', onServed)
  const stop = () => ledger.events.off('served', onServed)
  res.once('close', stop)
  res.once('finish', stop)
}
