/** Headless and quiet: no sandbox (root in CI) and no background traffic, so tests stay on loopback. */
export const QUIET_CHROMIUM_ARGS = [
  '--no-sandbox',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--no-first-run',
]

/**
 * Chromium flags for a browser whose pages are mesh peers (the farm's, and the tests'): quiet (no
 * background traffic), loopback allowed in peer connections, and the pages' real addresses in their
 * WebRTC candidates. By default Chromium hides them behind mDNS names (`<uuid>.local`), a privacy
 * measure for people browsing that makes two pages of one machine connect only once multicast DNS
 * resolves those names: on a loaded CI machine an ICE check then stalled for 8 s and the retry failed.
 */
export const MESH_PAGE_ARGS = [
  ...QUIET_CHROMIUM_ARGS,
  '--allow-loopback-in-peer-connection',
  '--use-fake-ui-for-media-stream',
  '--disable-features=WebRtcHideLocalIpsWithMdns',
]
