import { chromium, type Browser } from 'playwright-core'

/** Debian's Chromium; never a downloaded browser. */
export const CHROMIUM_PATH = process.env.SHARDMESH_CHROMIUM ?? '/usr/bin/chromium'

/** Headless and quiet: no background traffic, so tests stay on loopback. */
const BASE_ARGS = ['--no-sandbox', '--disable-gpu-sandbox', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run']

/** A browser whose pages are mesh peers: the farm's flags (their WebRTC candidates carry real addresses). */
export { MESH_PAGE_ARGS } from '../node-host/farm/meshPageArgs.ts'

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
