import { chromium, type Browser } from 'playwright-core'
import { QUIET_CHROMIUM_ARGS } from '../node-host/farm/meshPageArgs.ts'

/** Debian's Chromium; never a downloaded browser. */
export const CHROMIUM_PATH = process.env.SHARDMESH_CHROMIUM ?? '/usr/bin/chromium'

/** The quiet flags, and a GPU process that runs unsandboxed like the renderers. */
const BASE_ARGS = [...QUIET_CHROMIUM_ARGS, '--disable-gpu-sandbox']

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
