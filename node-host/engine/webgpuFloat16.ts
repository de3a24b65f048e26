import ort from 'onnxruntime-node'
import { OnnxGraph } from '../../shared/model/onnxGraph.ts'

let probe: Promise<boolean> | undefined

/**
 * Whether onnxruntime-node's WebGPU adapter runs float16 kernels (`shader-f16`), found by running a
 * three-node float16 model there once per process: ORT names no adapter features, and a float16
 * shard on an adapter without them loads but fails on its first run ("requires f16 but the device
 * does not support it"), as on SwiftShader.
 */
export function webgpuFloat16Supported(): Promise<boolean> {
  probe ??= (async () => {
    const g = new OnnxGraph('f16_probe')
    g.input('x', 'float32', [1, 4])
    const h = g.op1('Cast', ['x'], { to: 10 })
    g.output(g.op1('Cast', [g.op1('Mul', [h, h])], { to: 1 }), 'y', 'float32', [1, 4])
    let session: ort.InferenceSession | undefined
    try {
      session = await ort.InferenceSession.create(g.build().model, { executionProviders: ['webgpu'], logSeverityLevel: 3 })
      const { y } = await session.run({ x: new ort.Tensor('float32', Float32Array.of(1, 2, 3, 4), [1, 4]) })
      return (y!.data as Float32Array)[3] === 16
    } catch {
      return false
    } finally {
      await session?.release()
    }
  })()
  return probe
}
