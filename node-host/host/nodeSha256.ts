import { createHash } from 'node:crypto'
import type { Sha256Factory } from '../../shared/verify/commitment.ts'

/** node:crypto's SHA-256 for step digests: OpenSSL's, about 3× noble's on a decode step's bytes. */
export const nodeSha256: Sha256Factory = () => createHash('sha256')
