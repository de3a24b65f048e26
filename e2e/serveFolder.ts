import type { IncomingMessage, ServerResponse } from 'node:http'
import type { Plugin } from 'vite'
import { silentLogger } from '../shared/logger.ts'
import { guardListener } from '../node-host/net/guardListener.ts'
import { parseRequestTarget } from '../node-host/net/requestTarget.ts'
import { serveFolderFile } from '../node-host/net/serveFile.ts'

type Next = (err?: unknown) => void

/**
 * A connect handler serving `root` with the project's one file server ({@link serveFolderFile}:
 * GET, HEAD, single `Range` requests with 206, 416 when unsatisfiable, traversal refused); other
 * methods go on to the next handler. Any failure is an error answer, never a crash of the dev server.
 */
export function folderHandler(root: string) {
  const serve = guardListener(
    (req, res) => serveFolderFile(req, res, root, parseRequestTarget(req.url).pathname, { headers: { 'Cache-Control': 'no-store' } }),
    silentLogger,
  )
  return (req: IncomingMessage, res: ServerResponse, next: Next) => {
    if (req.method !== 'GET' && req.method !== 'HEAD') return next()
    serve(req, res)
  }
}

/** Serves a local folder under `prefix` from the Vite dev and preview servers (same origin as the page). */
export function serveFolder(prefix: string, root: string): Plugin {
  return {
    name: 'shardmesh:serve-folder',
    configureServer(server) {
      server.middlewares.use(prefix, folderHandler(root))
    },
    configurePreviewServer(server) {
      server.middlewares.use(prefix, folderHandler(root))
    },
  }
}
