import { retryTransient } from './retryTransient.ts'

/**
 * Where a checkpoint's files come from: a local folder (Node) or a base URL (browser and Node).
 * A Hugging Face Hub repository is the base URL `https://huggingface.co/<repo>/resolve/main`.
 */
export interface ModelSource {
  /** Human-readable name: the folder name or the Hub repository id. */
  readonly name: string
  /** Where it lives, for logs and cache keys. */
  readonly location: string
  /** Whole file as text; throws ModelFileNotFoundError when absent. */
  readText(file: string, signal?: AbortSignal): Promise<string>
  /** Bytes `[start, end)` of a file. */
  readRange(file: string, start: number, end: number, signal?: AbortSignal): Promise<Uint8Array>
  /** Whether the file exists. */
  has(file: string, signal?: AbortSignal): Promise<boolean>
}

export class ModelFileNotFoundError extends Error {
  readonly file: string
  readonly location: string

  constructor(file: string, location: string) {
    super(`model file "${file}" not found in ${location}`)
    this.file = file
    this.location = location
    this.name = 'ModelFileNotFoundError'
  }
}

export type HttpModelSourceInit = {
  /** Base URL; files are fetched from `<baseUrl>/<file>`. */
  baseUrl: string
  /** Name on the wire; defaults to the Hub repository id or the last path segment. */
  name?: string
  /** Extra headers, e.g. `Authorization: Bearer <HF token>`. */
  headers?: Record<string, string>
  /** @default globalThis.fetch */
  fetch?: typeof fetch
}

/** Hub repository id from a `…/<owner>/<repo>/resolve/<rev>` URL, else the last path segment. */
function nameFromUrl(baseUrl: string): string {
  const path = new URL(baseUrl).pathname.replace(/\/+$/, '')
  const hub = /\/([^/]+)\/([^/]+)\/resolve\/[^/]+$/.exec(path)
  if (hub) return `${hub[1]}/${hub[2]}`
  return path.split('/').filter(Boolean).pop() ?? baseUrl
}

export function httpModelSource(init: HttpModelSourceInit): ModelSource {
  const base = init.baseUrl.replace(/\/+$/, '')
  const doFetch = init.fetch ?? globalThis.fetch.bind(globalThis)
  const url = (file: string) => `${base}/${file.split('/').map(encodeURIComponent).join('/')}`
  const get = async (file: string, headers: Record<string, string>, signal?: AbortSignal) => {
    const res = await doFetch(url(file), { headers: { ...init.headers, ...headers }, signal })
    if (res.status === 404) throw new ModelFileNotFoundError(file, base)
    if (!res.ok) throw new Error(`GET ${url(file)}: HTTP ${res.status} ${res.statusText}`)
    return res
  }
  return {
    name: init.name ?? nameFromUrl(base),
    location: base,
    async readText(file, signal) {
      // Each read asks again when the connection failed it (retryTransient.ts); HTTP errors are final.
      return retryTransient(async () => (await get(file, {}, signal)).text(), { signal })
    },
    async readRange(file, start, end, signal) {
      if (end <= start) return new Uint8Array(0)
      const { res, body } = await retryTransient(async () => {
        const res = await get(file, { Range: `bytes=${start}-${end - 1}` }, signal)
        return { res, body: new Uint8Array(await res.arrayBuffer()) }
      }, { signal })
      // A server that ignores Range answers 200 with the whole file: cut it here.
      if (res.status === 200) {
        if (body.length < end) throw new TruncatedFileError(file, end, body.length)
        return body.subarray(start, end)
      }
      if (body.length !== end - start) throw new TruncatedFileError(file, end, start + body.length)
      return body
    },
    async has(file, signal) {
      const res = await retryTransient(() => doFetch(url(file), { method: 'HEAD', headers: init.headers, signal }), { signal })
      return res.ok
    },
  }
}

export class TruncatedFileError extends Error {
  readonly file: string
  readonly wanted: number
  readonly got: number

  constructor(file: string, wanted: number, got: number) {
    super(`model file "${file}" is truncated: needed bytes up to ${wanted}, file has ${got}`)
    this.file = file
    this.wanted = wanted
    this.got = got
    this.name = 'TruncatedFileError'
  }
}
