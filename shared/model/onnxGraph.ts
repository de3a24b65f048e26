import onnxProto from 'onnx-proto'
import { float32ToFloat16 } from './float16.ts'

const { onnx } = onnxProto

export type ElemType = 'float32' | 'float16' | 'int64' | 'int32' | 'uint8' | 'bool'

const ELEM: Record<ElemType, number> = {
  float32: onnx.TensorProto.DataType.FLOAT,
  float16: onnx.TensorProto.DataType.FLOAT16,
  int64: onnx.TensorProto.DataType.INT64,
  int32: onnx.TensorProto.DataType.INT32,
  uint8: onnx.TensorProto.DataType.UINT8,
  bool: onnx.TensorProto.DataType.BOOL,
}

/** Marks a number attribute as float (plain numbers are ints). */
export type FloatAttr = { float: number }
export const float = (value: number): FloatAttr => ({ float: value })
export type AttrValue = number | number[] | string | FloatAttr

type Dim = number | string

/** The file name initializers point at; the runtime supplies its bytes. */
export const EXTERNAL_DATA_FILE = 'weights.bin'
const ALIGN = 64

/** A serialized shard model: a small ModelProto plus its weights as external data. */
export type OnnxArtifact = {
  model: Uint8Array
  /** Bytes of EXTERNAL_DATA_FILE, in order (those not taken with takeWeights while building). */
  weights: Uint8Array[]
  weightBytes: number
}

/**
 * A small builder for ONNX graphs: values are named strings, ops append nodes,
 * weights go to an external data blob so models past 2 GB stay valid protobuf.
 */
export class OnnxGraph {
  private readonly nodes: onnxProto.onnx.INodeProto[] = []
  private readonly initializers: onnxProto.onnx.ITensorProto[] = []
  private readonly inputs: onnxProto.onnx.IValueInfoProto[] = []
  private readonly outputs: onnxProto.onnx.IValueInfoProto[] = []
  private readonly chunks: Uint8Array[] = []
  private offset = 0
  private counter = 0

  readonly name: string

  constructor(name: string) {
    this.name = name
  }

  private fresh(hint: string): string {
    return `${hint}_${this.counter++}`
  }

  private valueInfo(name: string, type: ElemType, dims: Dim[]): onnxProto.onnx.IValueInfoProto {
    return {
      name,
      type: {
        tensorType: {
          elemType: ELEM[type],
          shape: { dim: dims.map((d) => (typeof d === 'string' ? { dimParam: d } : { dimValue: d })) },
        },
      },
    }
  }

  input(name: string, type: ElemType, dims: Dim[]): string {
    this.inputs.push(this.valueInfo(name, type, dims))
    return name
  }

  /** Declares `value` as a graph output named `name` (an Identity joins them when they differ). */
  output(value: string, name: string, type: ElemType, dims: Dim[]): void {
    if (value !== name) this.nodes.push({ opType: 'Identity', input: [value], output: [name], name: `out_${name}` })
    this.outputs.push(this.valueInfo(name, type, dims))
  }

  /** A weight tensor stored as external data. */
  weight(name: string, type: ElemType, dims: number[], data: ArrayBufferView): string {
    const bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength)
    const pad = (ALIGN - (this.offset % ALIGN)) % ALIGN
    if (pad) {
      this.chunks.push(new Uint8Array(pad))
      this.offset += pad
    }
    this.initializers.push({
      name,
      dims,
      dataType: ELEM[type],
      dataLocation: onnx.TensorProto.DataLocation.EXTERNAL,
      externalData: [
        { key: 'location', value: EXTERNAL_DATA_FILE },
        { key: 'offset', value: String(this.offset) },
        { key: 'length', value: String(bytes.byteLength) },
      ],
    })
    this.chunks.push(bytes)
    this.offset += bytes.byteLength
    return name
  }

  /**
   * Hands over the weight bytes added since the last call (offsets stay as assigned), so a caller
   * can write them out while the graph is built and the builder does not hold every weight.
   */
  takeWeights(): Uint8Array[] {
    return this.chunks.splice(0)
  }

  /** A small constant stored inline. */
  constant(type: ElemType, dims: number[], values: ArrayLike<number> | ArrayLike<bigint>, hint = 'const'): string {
    const name = this.fresh(hint)
    let raw: ArrayBufferView
    switch (type) {
      case 'int64':
        raw = BigInt64Array.from(values as ArrayLike<number | bigint>, (v) => BigInt(v))
        break
      case 'int32':
        raw = Int32Array.from(values as ArrayLike<number>)
        break
      case 'float32':
        raw = Float32Array.from(values as ArrayLike<number>)
        break
      case 'float16':
        raw = float32ToFloat16(Float32Array.from(values as ArrayLike<number>))
        break
      case 'uint8':
      case 'bool':
        raw = Uint8Array.from(values as ArrayLike<number>)
        break
    }
    this.initializers.push({ name, dims, dataType: ELEM[type], rawData: new Uint8Array(raw.buffer, raw.byteOffset, raw.byteLength) })
    return name
  }

  /** Appends a node; returns its output names. Use '' for an absent optional input. */
  op(opType: string, inputs: string[], opts: { outputs?: number | Array<string | null>; attrs?: Record<string, AttrValue>; domain?: string } = {}): string[] {
    const spec = opts.outputs ?? 1
    const outputs = typeof spec === 'number'
      ? Array.from({ length: spec }, () => this.fresh(opType))
      : spec.map((o) => (o === null ? '' : o || this.fresh(opType)))
    const attribute = Object.entries(opts.attrs ?? {}).map(([name, v]) => {
      if (typeof v === 'string') return { name, type: onnx.AttributeProto.AttributeType.STRING, s: new TextEncoder().encode(v) }
      if (Array.isArray(v)) return { name, type: onnx.AttributeProto.AttributeType.INTS, ints: v }
      if (typeof v === 'object') return { name, type: onnx.AttributeProto.AttributeType.FLOAT, f: v.float }
      return { name, type: onnx.AttributeProto.AttributeType.INT, i: v }
    })
    this.nodes.push({ opType, input: inputs, output: outputs, name: this.fresh(`n_${opType}`), domain: opts.domain ?? '', attribute })
    return outputs
  }

  /** `op` for single-output nodes. */
  op1(opType: string, inputs: string[], attrs?: Record<string, AttrValue>, domain?: string): string {
    return this.op(opType, inputs, { attrs, domain })[0]!
  }

  build(): OnnxArtifact {
    const model = onnx.ModelProto.encode({
      irVersion: 10,
      producerName: 'shardmesh',
      opsetImport: [
        { domain: '', version: 21 },
        { domain: 'com.microsoft', version: 1 },
      ],
      graph: {
        name: this.name,
        node: this.nodes,
        initializer: this.initializers,
        input: this.inputs,
        output: this.outputs,
      },
    }).finish()
    return { model, weights: this.chunks, weightBytes: this.offset }
  }
}
