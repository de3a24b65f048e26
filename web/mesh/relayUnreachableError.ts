/**
 * No relay answered, so no peer can reach this tab. Its own file so that the app's shell can tell it
 * apart (`instanceof`) without loading the mesh code it belongs to.
 */
export class RelayUnreachableError extends Error {
  constructor(relays: string[], cause: string) {
    super(`no relay answered (${relays.length ? relays.join(', ') : 'none configured'}): ${cause}`)
    this.name = 'RelayUnreachableError'
  }
}
