import type ort from 'onnxruntime-node'

/**
 * onnxruntime-node 1.30 reads a feed's data through N-API, which knows no Float16Array: a float16
 * tensor that onnxruntime-common built on Node 24 (where Float16Array exists, so outputs and
 * `new Tensor('float16', Uint16Array)` both hold one) reaches the binding as 0 bytes ("not enough
 * space"). The binding reads `type`, `dims` and `data` only, so such a feed goes as the same bits
 * viewed as a Uint16Array. GPU tensors and every other type pass unchanged.
 */
export function float16FeedsForNode(feeds: ort.InferenceSession.FeedsType): ort.InferenceSession.FeedsType {
  let out: Record<string, ort.Tensor> | undefined
  for (const [name, t] of Object.entries(feeds)) {
    if (t.type !== 'float16' || t.location !== 'cpu' || t.data instanceof Uint16Array) continue
    const data = t.data as unknown as ArrayBufferView
    out ??= { ...feeds }
    out[name] = { type: 'float16', dims: t.dims, location: 'cpu', data: new Uint16Array(data.buffer, data.byteOffset, data.byteLength / 2) } as unknown as ort.Tensor
  }
  return out ?? feeds
}
