#!/usr/bin/env python3
"""A Plumise gRPC peer on grpcio, the library the upstream agent uses (grpc.aio, insecure channel,
256 MiB message limits, upstream's deadlines). Stubs are generated at start from the project's
proto/inference.proto with grpc_tools (no network).

  grpcio_peer.py client --target HOST:PORT --requests FILE   -> one JSON line per call
  grpcio_peer.py server --port N                             -> "listening", then one JSON line per request
"""

import argparse
import asyncio
import base64
import json
import os
import sys
import tempfile

import grpc
from grpc_tools import protoc

MAX = 256 * 1024 * 1024
OPTIONS = [("grpc.max_send_message_length", MAX), ("grpc.max_receive_message_length", MAX)]


def load_stubs():
    proto_dir = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "proto")
    out = tempfile.mkdtemp(prefix="plumise-stubs-")
    rc = protoc.main(["protoc", f"-I{proto_dir}", f"--python_out={out}", f"--grpc_python_out={out}", os.path.join(proto_dir, "inference.proto")])
    if rc != 0:
        raise SystemExit(f"protoc failed: {rc}")
    sys.path.insert(0, out)
    import inference_pb2
    import inference_pb2_grpc
    return inference_pb2, inference_pb2_grpc


def emit(obj):
    print(json.dumps(obj), flush=True)


async def client(target, requests_file):
    pb2, pb2_grpc = load_stubs()
    async with grpc.aio.insecure_channel(target, options=OPTIONS) as channel:
        stub = pb2_grpc.InferencePipelineStub(channel)
        ping = await stub.Ping(pb2.Empty(), timeout=10)
        emit({"call": "Ping", "agent_address": ping.agent_address, "model_name": ping.model_name, "layer_start": ping.layer_start, "layer_end": ping.layer_end, "is_ready": ping.is_ready})
        info = await stub.GetLayerInfo(pb2.Empty(), timeout=10)
        emit({"call": "GetLayerInfo", "total_layers": info.total_layers, "device": info.device, "is_ready": info.is_ready})
        for req in json.load(open(requests_file)):
            r = pb2.ForwardRequest(
                request_id=req["request_id"],
                hidden_states=base64.b64decode(req["hidden_states"]),
                shape=req["shape"],
                dtype=req["dtype"],
                params=pb2.GenerationParams(**req.get("params", {})),
                metadata=pb2.PipelineMetadata(**req.get("metadata", {})),
                past_token_ids=req.get("past_token_ids", []),
            )
            if req.get("stream"):
                chunks = [c async for c in stub.ForwardPassStream(r, timeout=60)]
                emit({"call": "ForwardPassStream", "request_id": req["request_id"], "token_ids": [c.token_id for c in chunks if not c.is_finished], "finish_reason": chunks[-1].finish_reason, "text": "".join(c.token_text for c in chunks)})
            else:
                res = await stub.ForwardPass(r, timeout=30)
                emit({"call": "ForwardPass", "request_id": res.request_id, "success": res.success, "error": res.error, "next_token_id": res.next_token_id, "is_eos": res.is_eos, "num_tokens": res.num_tokens, "dtype": res.dtype, "shape": list(res.shape), "bytes": len(res.hidden_states)})


async def server(port):
    pb2, pb2_grpc = load_stubs()

    class Servicer(pb2_grpc.InferencePipelineServicer):
        async def ForwardPass(self, request, context):
            m = request.metadata
            emit({"request_id": request.request_id, "dtype": request.dtype, "shape": list(request.shape), "bytes": len(request.hidden_states), "past_token_ids": list(request.past_token_ids), "node_index": m.node_index, "total_nodes": m.total_nodes, "is_last": m.is_last, "next_node_endpoint": m.next_node_endpoint, "max_new_tokens": request.params.max_new_tokens})
            return pb2.ForwardResponse(request_id=request.request_id, success=True, next_token_id=42 + len(request.past_token_ids), num_tokens=1, latency_ms=1.5)

        async def Ping(self, request, context):
            return pb2.PingResponse(agent_address="0xpython", is_ready=True)

    s = grpc.aio.server(options=OPTIONS)
    pb2_grpc.add_InferencePipelineServicer_to_server(Servicer(), s)
    s.add_insecure_port(f"127.0.0.1:{port}")
    await s.start()
    emit({"listening": port})
    await s.wait_for_termination()


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("client")
    c.add_argument("--target", required=True)
    c.add_argument("--requests", required=True)
    s = sub.add_parser("server")
    s.add_argument("--port", type=int, required=True)
    a = p.parse_args()
    asyncio.run(client(a.target, a.requests) if a.cmd == "client" else server(a.port))


if __name__ == "__main__":
    main()
