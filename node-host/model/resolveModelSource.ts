import { existsSync, statSync } from 'node:fs'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { httpModelSource, type ModelSource } from '../../shared/model/modelSource.ts'
import { fileModelSource } from './fileModelSource.ts'

/** The model shipped in the repository, used when none is named. */
export const DEFAULT_MODEL_DIR = resolve(dirname(fileURLToPath(import.meta.url)), '../../public/models/docs-llama-7m')

export class ModelNotFoundError extends Error {
  constructor(spec: string) {
    super(`model "${spec}" is neither a folder with config.json, an http(s) URL, nor a Hugging Face repository id (owner/name)`)
    this.name = 'ModelNotFoundError'
  }
}

/**
 * `--model` → a model source: a local folder, a base URL, or a Hugging Face repository id
 * (`owner/name`, fetched from `$HF_ENDPOINT` or https://huggingface.co). `$HF_TOKEN` goes only to
 * the Hub's own origin (see {@link hubTokenFetch}): never to a base URL elsewhere, nor along a
 * redirect to another host (the Hub's CDN).
 */
export function resolveModelSource(spec: string | undefined, env: NodeJS.ProcessEnv = process.env): ModelSource {
  if (!spec) return fileModelSource(DEFAULT_MODEL_DIR)
  const endpoint = (env.HF_ENDPOINT ?? 'https://huggingface.co').replace(/\/+$/, '')
  if (/^https?:\/\//.test(spec)) return httpModelSource({ baseUrl: spec, fetch: hubTokenFetch(env, endpoint) })
  const dir = resolve(spec)
  if (existsSync(dir) && statSync(dir).isDirectory()) {
    if (!existsSync(join(dir, 'config.json'))) throw new ModelNotFoundError(spec)
    return fileModelSource(dir)
  }
  const hub = /^([\w.-]+)\/([\w.-]+)(?:@([\w.-]+))?$/.exec(spec)
  if (hub) {
    return httpModelSource({
      baseUrl: `${endpoint}/${hub[1]}/${hub[2]}/resolve/${hub[3] ?? 'main'}`,
      name: `${hub[1]}/${hub[2]}`,
      fetch: hubTokenFetch(env, endpoint),
    })
  }
  throw new ModelNotFoundError(spec)
}

/**
 * `fetch` that adds `Authorization: Bearer $HF_TOKEN` to requests for the Hub endpoint's origin
 * only. Redirects are not followed with the token: fetch drops `Authorization` when a redirect
 * leaves the origin (the Fetch standard; the test holds undici to it), and a base URL on another
 * host never gets it at all.
 */
export function hubTokenFetch(env: NodeJS.ProcessEnv, endpoint: string): typeof fetch {
  const token = env.HF_TOKEN ?? env.HUGGING_FACE_HUB_TOKEN
  const hubOrigin = new URL(endpoint).origin
  return (input, init) => {
    const url = new URL(input instanceof Request ? input.url : input)
    if (!token || url.origin !== hubOrigin) return fetch(input, init)
    const headers = new Headers(init?.headers)
    headers.set('Authorization', `Bearer ${token}`)
    return fetch(input, { ...init, headers })
  }
}
