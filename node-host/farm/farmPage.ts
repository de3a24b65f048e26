import { chromium, type BrowserContext, type Page } from 'playwright-core'
import { z } from 'zod'
import { forgetDevtoolsEndpoint, readDevtoolsEndpoint } from './devtoolsEndpoint.ts'
import { MESH_PAGE_ARGS } from './meshPageArgs.ts'

/** How a worker's Chromium offers WebGPU: `auto` the machine's GPU, `swiftshader` the software adapter, `off` the wasm backend. */
export type FarmGpu = 'auto' | 'swiftshader' | 'off'

export type FarmPageInit = {
  worker: number
  appUrl: string
  profileDir: string
  chromiumPath: string
  gpu: FarmGpu
  headful: boolean
  /** MB each page offers the Oracle (its remembered choice); absent: the page's own default. */
  memoryMb?: number
  /** The browser also listens for DevTools on a loopback port of its own (its URL in `devtoolsUrl`), for an operator to attach to. */
  devtools?: boolean
}

/** The part of the page's contributor state the farm reads (window.shardmeshFarm, web/app/farmStatusHook.ts): untrusted, so parsed. */
export const pageStateSchema = z.object({
  phase: z.string(),
  error: z.string().optional(),
  peerId: z.string().optional(),
  range: z.object({ start: z.number(), end: z.number() }).optional(),
  tokensForwarded: z.number(),
  /** Earnings the Oracle booked for the page (EARNINGS_RECORD), USD. */
  earningsUsd: z.number().optional(),
  rate: z.array(z.object({ t: z.number(), tokensPerSecond: z.number() })),
})
export type PageState = z.infer<typeof pageStateSchema>

/** A launched worker: its context and page, and the one way it ended (crash, browser gone), if it did. */
export type FarmPage = {
  context: BrowserContext
  page: Page
  /** The browser's DevTools WebSocket URL (loopback), when launched with `devtools`. */
  devtoolsUrl?: string
  /** Resolves with a reason when the renderer crashes or the browser goes away. */
  ended: Promise<string>
  /** The page's state, or undefined when it does not answer within `timeoutMs` (hung, or not loaded yet). */
  read(timeoutMs: number): Promise<PageState | undefined>
  /** Tells the Oracle the page leaves (the contributor's stop: its socket closes with 1000), then closes the browser; false when the page did not answer. */
  stop(): Promise<boolean>
  /** Closes the browser without a word to the Oracle (after a crash). */
  close(): Promise<void>
  /** The page's peer key signs its binding to `wallet` (web/agent/pageAgentBinding.ts); the wallet's key stays here. */
  signBinding(chainId: number, wallet: `0x${string}`): Promise<{ peerId: string; signature: `0x${string}` }>
}

const bindingSchema = z.object({ peerId: z.string().min(1), signature: z.string().regex(/^0x[0-9a-fA-F]{128}$/).transform((s) => s as `0x${string}`) })

// Pages in the background keep their timers and rendering: they serve while nobody looks.
const BASE_ARGS = [...MESH_PAGE_ARGS, '--disable-renderer-backgrounding', '--disable-background-timer-throttling', '--disable-backgrounding-occluded-windows']
const GPU_ARGS: Record<FarmGpu, string[]> = {
  auto: ['--enable-unsafe-webgpu', '--enable-features=Vulkan', '--ignore-gpu-blocklist'],
  swiftshader: ['--enable-unsafe-webgpu', '--use-webgpu-adapter=swiftshader', '--disable-gpu-sandbox'],
  off: [],
}

const CHOICE_KEY = 'shardmesh.contribute'

/**
 * Launches one worker's Chromium on its own persistent profile (IndexedDB keeps its libp2p identity,
 * so the peer id survives restarts) and opens the app in contribute mode: the remembered choice is
 * set to contributing before the app reads it, so the page resumes contributing by itself.
 */
export async function launchFarmPage(init: FarmPageInit): Promise<FarmPage> {
  if (init.devtools) await forgetDevtoolsEndpoint(init.profileDir)
  const context = await chromium.launchPersistentContext(init.profileDir, {
    executablePath: init.chromiumPath,
    headless: !init.headful,
    // Port 0: each worker's browser picks a free port and notes it in its profile (DevToolsActivePort);
    // Chromium binds it to 127.0.0.1 only.
    args: [...BASE_ARGS, ...GPU_ARGS[init.gpu], ...(init.devtools ? ['--remote-debugging-port=0'] : [])],
    // The farm handles the signals: each page first tells the Oracle it leaves, then its browser closes.
    // (Playwright would kill the browsers at once; they run in their own process group, so a
    // terminal's Ctrl-C reaches only the farm.)
    handleSIGINT: false,
    handleSIGTERM: false,
    handleSIGHUP: false,
  })
  try {
    const choice = JSON.stringify({ contributing: true, ...(init.memoryMb ? { memoryMb: init.memoryMb } : {}) })
    await context.addInitScript(([key, value]) => localStorage.setItem(key, value), [CHOICE_KEY, choice] as const)
    const page = context.pages()[0] ?? (await context.newPage())
    const ended = new Promise<string>((resolve) => {
      page.once('crash', () => resolve('the renderer crashed'))
      context.once('close', () => resolve('the browser closed'))
    })
    const devtoolsUrl = init.devtools ? await readDevtoolsEndpoint(init.profileDir) : undefined
    await page.goto(init.appUrl)
    const read = async (timeoutMs: number) => {
      let timer: NodeJS.Timeout | undefined
      const timeout = new Promise<undefined>((r) => (timer = setTimeout(() => r(undefined), timeoutMs)))
      const answer = page.evaluate(() => window.shardmeshFarm?.state() ?? null).then(
        (s) => pageStateSchema.safeParse(s).data,
        () => undefined,
      )
      try {
        return await Promise.race([answer, timeout])
      } finally {
        clearTimeout(timer)
      }
    }
    const close = async () => {
      await context.close().catch(() => undefined)
    }
    const stop = async () => {
      let timer: NodeJS.Timeout | undefined
      const left = await Promise.race([
        page.evaluate(async () => (window.shardmeshFarm ? (await window.shardmeshFarm.stop(), true) : false)).catch(() => false),
        new Promise<boolean>((r) => (timer = setTimeout(() => r(false), 10_000))),
      ])
      clearTimeout(timer)
      await close()
      return left
    }
    const signBinding = async (chainId: number, wallet: `0x${string}`) =>
      bindingSchema.parse(
        await page.evaluate(async ([c, w]) => {
          if (!window.shardmeshFarm) throw new Error('the app is not loaded')
          return window.shardmeshFarm.signAgentBinding(c, w)
        }, [chainId, wallet] as const),
      )
    return { context, page, devtoolsUrl, ended, read, stop, close, signBinding }
  } catch (e) {
    await context.close().catch(() => undefined)
    throw e
  }
}
