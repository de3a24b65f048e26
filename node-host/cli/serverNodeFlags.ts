/**
 * Node flags of the commands that run for hours (hosts, origins, the Oracle, the farm).
 *
 * `--max-semi-space-size=16` (MiB): V8 in Node 24 grows a busy host's young generation to 134 MB;
 * with the flag it stays at 34 MB. Measured in 12-minute soaks of four host processes on a 2-core
 * machine (`npm run bench -- soak --minutes 12 --kill-every 100000 --warmup 300`): a busy host's
 * V8 heap was 230–245 MB with the default and 122–127 MB with the flag, and its anonymous memory
 * after the warm-up grew 370 and 515 MB/h (two hosts, default) against 7–90 MB/h (four busy hosts
 * in two runs, flag) apart from one host's single 70 MB step. Requests answered did not change
 * beyond run-to-run noise (9,084–11,399 per run either way).
 *
 * V8 sizes its young generation at start, so the flag must be on the command line:
 * `v8.setFlagsFromString` later has no such effect.
 *
 * `--heap-growing-percent=300`: V8 lets the old generation grow to 4× what survived the last full
 * collection (its largest factor) instead of the small one it picks for a host's ~45 MB heap.
 * Serving 16 clients on the 1.1 B model, a host ran a full mark-compact about once or twice a
 * second (`--trace-gc` over `npm run bench -- load --models tinyllama-1.1b --clients 1,16
 * --pipelines 1 --modes batched`: 11–18 per host, 0.45–0.68 s of its main thread), and with three
 * hosts on two cores one host's collector took CPU from another's ONNX Runtime run. With the flag:
 * 3–4 per host (0.13–0.23 s), the committed heap peaking at 91–95 MB either way; 16 clients'
 * per-token p50 393–459 ms against 481–551 ms, 20.6–24.3 tok/s against 18.6–20.6 (five
 * measurements each, runs alternating). A shard's peak RSS moved by 1 % (1,553 and 1,571 MB):
 * ArrayBuffers (weights, KV caches) are not scaled by the factor.
 */
export const SERVER_NODE_FLAGS: readonly string[] = ['--max-semi-space-size=16', '--heap-growing-percent=300']

/** The commands that get SERVER_NODE_FLAGS. */
export const SERVER_COMMANDS: ReadonlySet<string> = new Set(['start', 'origin', 'oracle', 'serve', 'local', 'farm', 'app'])

/** The flags of `flags` that neither this process's command line nor NODE_OPTIONS sets. */
export function missingNodeFlags(flags: readonly string[], execArgv: readonly string[], nodeOptions: string | undefined): string[] {
  const given = [...execArgv, ...(nodeOptions ?? '').split(/\s+/)].filter(Boolean)
  const name = (f: string) => f.split('=')[0]!.replaceAll('_', '-')
  return flags.filter((f) => !given.some((g) => name(g) === name(f)))
}

/**
 * Replaces this process (same pid, stdio and environment) by one started with the missing server
 * flags. Returns when nothing is missing, where `process.execve` is not available (Windows,
 * Node < 22.15) or where the exec fails: the process then runs on with Node's defaults.
 */
export function reexecWithServerFlags(): void {
  const missing = missingNodeFlags(SERVER_NODE_FLAGS, process.execArgv, process.env.NODE_OPTIONS)
  if (missing.length === 0 || typeof process.execve !== 'function') return
  try {
    process.execve(process.execPath, [process.execPath, ...process.execArgv, ...missing, ...process.argv.slice(1)], process.env)
  } catch (e) {
    // The exec call itself failed (a sandbox that forbids it): run on in this process.
    process.stderr.write(`shardmesh: running without ${missing.join(' ')} (${(e as Error).message})\n`)
  }
}
