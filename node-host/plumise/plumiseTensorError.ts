/** A tensor on the Plumise wire that cannot be read: bad shape, size, dtype or archive. */
export class PlumiseTensorError extends Error {
  constructor(message: string) {
    super(message)
    this.name = 'PlumiseTensorError'
  }
}
