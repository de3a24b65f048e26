#!/usr/bin/env python3
"""A Plumise test agent: speaks the Oracle HTTP API the way the upstream Python agent does.

Standard library only (CI installs no pip packages): Keccak-256, secp256k1 ECDSA (RFC 6979
deterministic k, low s, v = 27 + recovery id) and EIP-191 personal_sign are written out here.
The signed strings are json.dumps(obj, separators=(",", ":")), as upstream (ensure_ascii on);
metrics sign their payload with sort_keys=True, as upstream's sign_payload.

  plumise_agent.py address --key HEX
  plumise_agent.py sign --key HEX --message TEXT [--message TEXT ...]   -> {"address", "signatures"}
  plumise_agent.py run --oracle URL --key HEX --model NAME [--grpc URL] [--http URL]
                       [--ram-mb N] [--vram-mb N] [--device NAME] [--tokens N] [--requests N]

`run` registers, reports ready, sends one metrics report and fetches the topology, printing one
JSON line per call: {"call": ..., "status": ..., "body": ...}.
"""

import argparse
import hashlib
import hmac
import json
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

# ---------------------------------------------------------------- Keccak-256 (original padding)

_RC = [
    0x0000000000000001, 0x0000000000008082, 0x800000000000808A, 0x8000000080008000,
    0x000000000000808B, 0x0000000080000001, 0x8000000080008081, 0x8000000000008009,
    0x000000000000008A, 0x0000000000000088, 0x0000000080008009, 0x000000008000000A,
    0x000000008000808B, 0x800000000000008B, 0x8000000000008089, 0x8000000000008003,
    0x8000000000008002, 0x8000000000000080, 0x000000000000800A, 0x800000008000000A,
    0x8000000080008081, 0x8000000000008080, 0x0000000080000001, 0x8000000080008008,
]
# Rotation offsets r[x][y].
_ROT = [
    [0, 36, 3, 41, 18],
    [1, 44, 10, 45, 2],
    [62, 6, 43, 15, 61],
    [28, 55, 25, 21, 56],
    [27, 20, 39, 8, 14],
]
_MASK = (1 << 64) - 1


def _rol(v, n):
    return ((v << n) | (v >> (64 - n))) & _MASK if n else v


def _keccak_f(a):
    for rc in _RC:
        c = [a[x][0] ^ a[x][1] ^ a[x][2] ^ a[x][3] ^ a[x][4] for x in range(5)]
        d = [c[(x - 1) % 5] ^ _rol(c[(x + 1) % 5], 1) for x in range(5)]
        a = [[a[x][y] ^ d[x] for y in range(5)] for x in range(5)]
        b = [[0] * 5 for _ in range(5)]
        for x in range(5):
            for y in range(5):
                b[y][(2 * x + 3 * y) % 5] = _rol(a[x][y], _ROT[x][y])
        a = [[b[x][y] ^ ((~b[(x + 1) % 5][y] & _MASK) & b[(x + 2) % 5][y]) for y in range(5)] for x in range(5)]
        a[0][0] ^= rc
    return a


def keccak256(data: bytes) -> bytes:
    rate = 136
    padded = bytearray(data) + b"\x01" + b"\x00" * ((-len(data) - 1) % rate)
    padded[-1] |= 0x80
    a = [[0] * 5 for _ in range(5)]
    for off in range(0, len(padded), rate):
        block = padded[off:off + rate]
        for i in range(rate // 8):
            a[i % 5][i // 5] ^= int.from_bytes(block[8 * i:8 * i + 8], "little")
        a = _keccak_f(a)
    out = b"".join(a[i % 5][i // 5].to_bytes(8, "little") for i in range(rate // 8))
    return out[:32]

# ---------------------------------------------------------------- secp256k1

_P = 2**256 - 2**32 - 977
_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
_G = (
    0x79BE667EF9DCBBAC55A06295CE870B07029BFCDB2DCE28D959F2815B16F81798,
    0x483ADA7726A3C4655DA4FBFC0E1108A8FD17B448A68554199C47D08FFB10D4B8,
)


def _add(p, q):
    if p is None:
        return q
    if q is None:
        return p
    if p[0] == q[0] and (p[1] + q[1]) % _P == 0:
        return None
    if p == q:
        lam = 3 * p[0] * p[0] * pow(2 * p[1], -1, _P) % _P
    else:
        lam = (q[1] - p[1]) * pow(q[0] - p[0], -1, _P) % _P
    x = (lam * lam - p[0] - q[0]) % _P
    return (x, (lam * (p[0] - x) - p[1]) % _P)


def _mul(k, point=_G):
    acc = None
    while k:
        if k & 1:
            acc = _add(acc, point)
        point = _add(point, point)
        k >>= 1
    return acc


def _rfc6979_k(secret: int, digest: bytes):
    """Deterministic nonces (RFC 6979 §3.2, HMAC-SHA256), as eth_account and viem/noble use."""
    x = secret.to_bytes(32, "big")
    h = (int.from_bytes(digest, "big") % _N).to_bytes(32, "big")
    v = b"\x01" * 32
    k = b"\x00" * 32
    k = hmac.new(k, v + b"\x00" + x + h, hashlib.sha256).digest()
    v = hmac.new(k, v, hashlib.sha256).digest()
    k = hmac.new(k, v + b"\x01" + x + h, hashlib.sha256).digest()
    v = hmac.new(k, v, hashlib.sha256).digest()
    while True:
        v = hmac.new(k, v, hashlib.sha256).digest()
        candidate = int.from_bytes(v, "big")
        if 1 <= candidate < _N:
            yield candidate
        k = hmac.new(k, v + b"\x00", hashlib.sha256).digest()
        v = hmac.new(k, v, hashlib.sha256).digest()


def sign_digest(secret: int, digest: bytes) -> bytes:
    """65 bytes r ‖ s ‖ v, low s, v = 27 + recovery id."""
    z = int.from_bytes(digest, "big")
    for k in _rfc6979_k(secret, digest):
        point = _mul(k)
        r = point[0] % _N
        if r == 0:
            continue
        s = pow(k, -1, _N) * (z + r * secret) % _N
        if s == 0:
            continue
        recid = (point[1] & 1) | (2 if point[0] >= _N else 0)
        if s > _N // 2:
            s = _N - s
            recid ^= 1
        return r.to_bytes(32, "big") + s.to_bytes(32, "big") + bytes([27 + recid])
    raise AssertionError("unreachable")


def checksum(address_hex: str) -> str:
    lower = address_hex.lower().removeprefix("0x")
    digest = keccak256(lower.encode("ascii")).hex()
    return "0x" + "".join(c.upper() if int(digest[i], 16) >= 8 else c for i, c in enumerate(lower))


def address_of(secret: int) -> str:
    x, y = _mul(secret)
    return checksum(keccak256(x.to_bytes(32, "big") + y.to_bytes(32, "big"))[12:].hex())


def personal_sign(secret: int, message: str) -> str:
    """EIP-191 version 0x45: keccak256("\\x19Ethereum Signed Message:\\n" + len + message)."""
    data = message.encode("utf-8")
    digest = keccak256(b"\x19Ethereum Signed Message:\n" + str(len(data)).encode("ascii") + data)
    return "0x" + sign_digest(secret, digest).hex()

# ---------------------------------------------------------------- the agent's calls


def compact(obj, sort_keys=False) -> str:
    return json.dumps(obj, separators=(",", ":"), sort_keys=sort_keys)


def call(method, url, body=None):
    data = None if body is None else json.dumps(body).encode("utf-8")
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as res:
            return res.status, json.loads(res.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


def emit(name, status, body):
    print(json.dumps({"call": name, "status": status, "body": body}), flush=True)


def run(args):
    secret = int(args.key.removeprefix("0x"), 16)
    address = address_of(secret)
    oracle = args.oracle.rstrip("/")

    sign_data = {
        "address": address,
        "grpcEndpoint": args.grpc,
        "httpEndpoint": args.http,
        "model": args.model,
        "ramMb": args.ram_mb,
        "device": args.device,
        "vramMb": args.vram_mb,
        "timestamp": int(time.time()),
    }
    payload = {**sign_data, "signature": personal_sign(secret, compact(sign_data))}
    emit("register", *call("POST", f"{oracle}/api/v1/pipeline/register", payload))

    sign_data = {"address": address, "model": args.model, "timestamp": int(time.time())}
    emit("ready", *call("POST", f"{oracle}/api/v1/pipeline/ready", {**sign_data, "signature": personal_sign(secret, compact(sign_data))}))

    ts = int(time.time())
    signature = personal_sign(secret, compact({"agent": address, "processed_tokens": args.tokens, "timestamp": ts}, sort_keys=True))
    body = {
        "wallet": address,
        "tokensProcessed": args.tokens,
        "avgLatencyMs": round(12.345, 2),
        "uptimeSeconds": 60,
        "requestCount": args.requests,
        "timestamp": ts,
        "signature": signature,
    }
    emit("metrics", *call("POST", f"{oracle}/api/v1/metrics/report", body))

    query = urllib.parse.urlencode({"model": args.model})
    emit("topology", *call("GET", f"{oracle}/api/v1/pipeline/topology?{query}"))


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p_addr = sub.add_parser("address")
    p_addr.add_argument("--key", required=True)
    p_sign = sub.add_parser("sign")
    p_sign.add_argument("--key", required=True)
    p_sign.add_argument("--message", action="append", required=True)
    p_run = sub.add_parser("run")
    p_run.add_argument("--oracle", required=True)
    p_run.add_argument("--key", required=True)
    p_run.add_argument("--model", required=True)
    p_run.add_argument("--grpc", default="http://127.0.0.1:50051")
    p_run.add_argument("--http", default="http://127.0.0.1:31331")
    p_run.add_argument("--ram-mb", type=int, default=16384)
    p_run.add_argument("--vram-mb", type=int, default=0)
    p_run.add_argument("--device", default="cpu")
    p_run.add_argument("--tokens", type=int, default=42)
    p_run.add_argument("--requests", type=int, default=3)
    args = parser.parse_args(argv)

    if args.command == "address":
        print(address_of(int(args.key.removeprefix("0x"), 16)))
    elif args.command == "sign":
        secret = int(args.key.removeprefix("0x"), 16)
        print(json.dumps({"address": address_of(secret), "signatures": [personal_sign(secret, m) for m in args.message]}))
    else:
        run(args)


if __name__ == "__main__":
    main(sys.argv[1:])
