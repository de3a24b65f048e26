/**
 * Polls `fn` until it returns a value (not undefined) and returns it; past `ms`, fails naming
 * `what`. For tests that wait on real components (an Oracle booking a report, a host serving).
 */
export async function waitFor<T>(what: string, fn: () => T | undefined | Promise<T | undefined>, ms = 60_000, everyMs = 50): Promise<T> {
  const deadline = Date.now() + ms
  for (;;) {
    const v = await fn()
    if (v !== undefined) return v
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((r) => setTimeout(r, everyMs))
  }
}
