/**
 * The referee cannot recompute a step as the accused committed to it (a weight format this Oracle
 * does not run). The ledger then keeps the evidence as unconfirmed: no consequence, since a
 * recomputation in another format would differ from an honest row by more than the tolerance.
 */
export class RefereeCannotRecomputeError extends Error {
  constructor(message: string) {
    super(message)
    this.name = 'RefereeCannotRecomputeError'
  }
}
