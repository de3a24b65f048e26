/** A one-line progress bar on stderr, drawn only when stderr is a terminal. */
export function progressBar(label: string, stream: NodeJS.WriteStream = process.stderr): { update(done: number, total: number): void; done(): void } {
  const tty = stream.isTTY === true
  let last = -1
  return {
    update(done, total) {
      if (!tty || total <= 0) return
      const pct = Math.floor((100 * done) / total)
      if (pct === last) return
      last = pct
      const width = 30
      const filled = Math.round((width * done) / total)
      stream.write(`\r${label} [${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${pct}%`)
    },
    done() {
      if (tty && last >= 0) stream.write('\n')
    },
  }
}
