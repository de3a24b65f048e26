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
 * (`owner/name`, fetched from `$HF_ENDPOINT` or https://huggingface.co with `$HF_TOKEN` if set).
 */
export function resolveModelSource(spec: string | undefined, env: NodeJS.ProcessEnv = process.env): ModelSource {
  if (!spec) return fileModelSource(DEFAULT_MODEL_DIR)
  if (/^https?:\/\//.test(spec)) return httpModelSource({ baseUrl: spec, headers: authHeaders(env) })
  const dir = resolve(spec)
  if (existsSync(dir) && statSync(dir).isDirectory()) {
    if (!existsSync(join(dir, 'config.json'))) throw new ModelNotFoundError(spec)
    return fileModelSource(dir)
  }
  const hub = /^([\w.-]+)\/([\w.-]+)(?:@([\w.-]+))?$/.exec(spec)
  if (hub) {
    const endpoint = (env.HF_ENDPOINT ?? 'https://huggingface.co').replace(/\/+$/, '')
    return httpModelSource({
      baseUrl: `${endpoint}/${hub[1]}/${hub[2]}/resolve/${hub[3] ?? 'main'}`,
      name: `${hub[1]}/${hub[2]}`,
      headers: authHeaders(env),
    })
  }
  throw new ModelNotFoundError(spec)
}

function authHeaders(env: NodeJS.ProcessEnv): Record<string, string> | undefined {
  const token = env.HF_TOKEN ?? env.HUGGING_FACE_HUB_TOKEN
  return token ? { Authorization: `Bearer ${token}` } : undefined
}
