import { chromium, type Browser } from 'playwright-core'

/** Debian's Chromium; never a downloaded browser. */
export const CHROMIUM_PATH = process.env.SHARDMESH_CHROMIUM ?? '/usr/bin/chromium'

/** Headless and quiet: no background traffic, so tests stay on loopback. */
const BASE_ARGS = ['--no-sandbox', '--disable-gpu-sandbox', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run']

/**
 * A browser whose pages are mesh peers: pages reach each other over WebRTC on this machine. By
 * default Chromium hides a page's addresses behind mDNS names (`<uuid>.local`), and two pages that
 * offer only such candidates connect only once multicast DNS resolves them: on a loaded CI machine
 * an ICE check then stalled for 8 s and the retry failed. With the real host addresses the check
 * runs at once.
 */
export const MESH_PAGE_ARGS = [
  '--no-sandbox',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--no-first-run',
  '--allow-loopback-in-peer-connection',
  '--use-fake-ui-for-media-stream',
  '--disable-features=WebRtcHideLocalIpsWithMdns',
]

export type LaunchChromiumOptions = {
  /**
   * Offer a WebGPU adapter. Without a GPU, `--enable-unsafe-webgpu` gives one on SwiftShader's
   * Vulkan driver (slow, correct); without the flag headless Chromium has `navigator.gpu` but no adapter.
   * @default true
   */
  webgpu?: boolean
}

export function launchChromium(options: LaunchChromiumOptions = {}): Promise<Browser> {
  const args = options.webgpu === false ? BASE_ARGS : [...BASE_ARGS, '--enable-unsafe-webgpu']
  return chromium.launch({ executablePath: CHROMIUM_PATH, args })
}
