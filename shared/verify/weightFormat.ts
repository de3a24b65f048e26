import { z } from 'zod'

/**
 * Spot checks compare rows by distance, and two honest hosts on different weight formats are
 * further apart than the tolerance (int4 vs float32: 9e-2 to 1.7e-1 on hidden states, see
 * tolerance.ts): they are different models. So the format a hop ran is part of what it commits
 * to, it is advertised (PeerInfo.weights), and a step is only ever recomputed in that same format,
 * by a checker or by the Oracle. Absent on the wire means float32 (builds before this field).
 */
export const DEFAULT_WEIGHTS = 'float32'

/**
 * A weight format as it travels: a short lowercase name. Not an enum: a format this build does
 * not run (a newer peer's) must still parse, and then simply finds no checker and no referee.
 */
export const weightFormatSchema = z.string().regex(/^[a-z0-9]{1,16}$/)

/** The format a possibly-absent wire value means. */
export const weightsOf = (w: string | undefined): string => (w ? w : DEFAULT_WEIGHTS)

/** A wire value from a peer (untrusted): a valid name, or undefined (read as float32). */
export function parseWeights(w: string): string | undefined {
  return weightFormatSchema.safeParse(w).success ? w : undefined
}
