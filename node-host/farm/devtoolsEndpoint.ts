import { readFile, rm } from 'node:fs/promises'
import { join } from 'node:path'

/** Chromium's note of its DevTools port, in the profile folder, when started with `--remote-debugging-port=0`. */
const ACTIVE_PORT_FILE = 'DevToolsActivePort'

/** The browser's DevTools WebSocket URL from a DevToolsActivePort file (a port line, then the browser target's path), or undefined. */
export function parseDevtoolsActivePort(text: string): string | undefined {
  const [port, path] = text.split('\n').map((l) => l.trim())
  if (!port || !/^\d{1,5}$/.test(port) || Number(port) > 65535 || !path || !/^\/devtools\/browser\/[\w-]+$/.test(path)) return undefined
  return `ws://127.0.0.1:${port}${path}`
}

/** Removes a previous run's note, so that the one read after a launch is this browser's. */
export async function forgetDevtoolsEndpoint(profileDir: string): Promise<void> {
  await rm(join(profileDir, ACTIVE_PORT_FILE), { force: true })
}

/**
 * The DevTools URL of the Chromium just started on `profileDir`: it writes the file once its DevTools
 * server listens, which may be a moment after Playwright's own pipe is up. Undefined after `timeoutMs`.
 */
export async function readDevtoolsEndpoint(profileDir: string, timeoutMs = 10_000): Promise<string | undefined> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const url = parseDevtoolsActivePort(await readFile(join(profileDir, ACTIVE_PORT_FILE), 'utf8').catch(() => ''))
    if (url || Date.now() > deadline) return url
    await new Promise((r) => setTimeout(r, 100))
  }
}
