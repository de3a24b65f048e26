/** A request line whose target is not a path this server can read: answered 400, never thrown out of a listener. */
export class BadRequestTargetError extends Error {
  readonly status = 400

  constructor(message: string) {
    super(message)
    this.name = 'BadRequestTargetError'
  }
}

export type RequestTarget = { pathname: string; searchParams: URLSearchParams }

/**
 * The path and query of a request target (`req.url`). Origin-form (`/a/b?q`) is read as a path
 * even when it starts with `//` (`new URL('//a:b', base)` would take it for a host and throw);
 * absolute-form (`http://host/a`) is accepted as RFC 9112 asks; anything else (`*`, junk) is a
 * {@link BadRequestTargetError}.
 */
export function parseRequestTarget(target: string | undefined): RequestTarget {
  const raw = target ?? '/'
  let url: URL
  try {
    url = raw.startsWith('/') ? new URL(`http://origin-form${raw}`) : new URL(raw)
  } catch {
    throw new BadRequestTargetError('malformed request target')
  }
  if (raw.startsWith('/') ? url.host !== 'origin-form' : url.protocol !== 'http:' && url.protocol !== 'https:') throw new BadRequestTargetError('malformed request target')
  return { pathname: url.pathname, searchParams: url.searchParams }
}

/** `decodeURIComponent` of one path segment; a bad percent-encoding (`%E0%A4%A`) is a {@link BadRequestTargetError}. */
export function decodePathSegment(segment: string): string {
  try {
    return decodeURIComponent(segment)
  } catch {
    throw new BadRequestTargetError('malformed percent-encoding in the request path')
  }
}
