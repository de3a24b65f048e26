import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { silentLogger, type Logger } from '../shared/logger.ts'
import { answerClientErrors, answerError, guardListener } from '../node-host/net/guardListener.ts'
import { parseRequestTarget } from '../node-host/net/requestTarget.ts'
import { serveFolderFile } from '../node-host/net/serveFile.ts'

export type StaticServer = { url: string; requests: Array<{ path: string; range?: string }>; close(): Promise<void> }

/**
 * Serves a folder on 127.0.0.1 the way the Hugging Face Hub serves files: GET and HEAD,
 * `Range: bytes=a-b` answered with 206, 404 for missing files. `prefix` mimics `/<repo>/resolve/main`.
 */
export async function startStaticServer(root: string, prefix = '', logger: Logger = silentLogger): Promise<StaticServer> {
  const requests: StaticServer['requests'] = []
  const server: Server = createServer(
    guardListener(async (req, res) => {
      const { pathname } = parseRequestTarget(req.url)
      requests.push({ path: pathname, range: req.headers.range })
      if (!pathname.startsWith(`${prefix}/`)) return answerError(res, 404, 'no such file')
      if (!(await serveFolderFile(req, res, root, pathname.slice(prefix.length + 1)))) answerError(res, 405, 'only GET and HEAD')
    }, logger),
  )
  answerClientErrors(server, logger)
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as AddressInfo
  return {
    url: `http://127.0.0.1:${port}${prefix}`,
    requests,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  }
}
