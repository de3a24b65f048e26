import { createHash } from 'node:crypto'
import type { Sha256Factory } from '../../shared/verify/commitment.ts'

/**
 * node:crypto's SHA-256 for step digests: OpenSSL's hashes bytes about 4× faster than noble (2 KB:
 * 2.6 vs 12 µs), but a hash object per step costs about what that saves on docs-llama-7m's 1 KB
 * rows (verify bench: the hops' time alike); on larger models' rows it should gain (not measured).
 */
export const nodeSha256: Sha256Factory = () => createHash('sha256')
