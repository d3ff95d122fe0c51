"""ECDSA signature verification on NIST P-256 with SHA-256, in plain Python.

Why not a library: the serving image verifies one signature per cold start, and the libraries
that do it cost more to import than the whole check may take (measured on the 2-core machine,
fresh process: ``cryptography``'s ECDSA and PEM modules 43-59 ms, ``ecdsa`` 34-39 ms, against
the 30 ms budget of issue 22). Verification handles public values only (the key, the message,
the signature), so none of a signer's constant-time concerns apply; what must be right is the
arithmetic and every range check of SEC 1 v2 §4.1.4, which ``tests/inference/test_ecdsa_p256.py``
holds against ``cryptography`` over random and edge-case vectors.
"""

from __future__ import annotations

import hashlib

# SEC 2 v2 §2.4.2 (secp256r1): y^2 = x^3 - 3x + b over GF(P), base point G of prime order N.
P = 0xFFFFFFFF00000001000000000000000000000000FFFFFFFFFFFFFFFFFFFFFFFF
B = 0x5AC635D8AA3A93E7B3EBBD55769886BC651D06B0CC53B0F63BCE3C3E27D2604B
N = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
G = (
    0x6B17D1F2E12C4247F8BCE6E563A440F277037D812DEB33A0F4A13945D898C296,
    0x4FE342E2FE1A7F9B8EE7EB4A7C0F9E162BCE33576B315ECECBB6406837BF51F5,
)

# The DER prefix of a P-256 SubjectPublicKeyInfo (id-ecPublicKey, prime256v1, an uncompressed
# point as a 66-byte BIT STRING): every such key is this prefix + 0x04 + X + Y.
SPKI_PREFIX = bytes.fromhex("3059301306072a8648ce3d020106082a8648ce3d030107034200")

Point = tuple[int, int]
_Jacobian = tuple[int, int, int]  # (X, Y, Z) with x = X/Z^2, y = Y/Z^3; Z == 0 is infinity
_INFINITY: _Jacobian = (1, 1, 0)


class InvalidKey(ValueError):
    """The bytes are not a P-256 public key (wrong encoding, or a point not on the curve)."""


def on_curve(point: Point) -> bool:
    x, y = point
    return 0 <= x < P and 0 <= y < P and (y * y - (x * x * x - 3 * x + B)) % P == 0


def public_key_from_spki(der: bytes) -> Point:
    """The point of a DER SubjectPublicKeyInfo for P-256 (uncompressed only).

    Raises:
        InvalidKey: another algorithm or curve, a compressed point, or a point off the curve.
    """
    if len(der) != len(SPKI_PREFIX) + 65 or not der.startswith(SPKI_PREFIX + b"\x04"):
        raise InvalidKey("not an uncompressed P-256 public key (SubjectPublicKeyInfo)")
    raw = der[len(SPKI_PREFIX) + 1 :]
    point = (int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))
    if not on_curve(point):
        raise InvalidKey("the public key's point is not on P-256")
    return point


def spki_from_public_key(point: Point) -> bytes:
    return SPKI_PREFIX + b"\x04" + point[0].to_bytes(32, "big") + point[1].to_bytes(32, "big")


def parse_der_signature(der: bytes) -> tuple[int, int] | None:
    """(r, s) of a DER ``Ecdsa-Sig-Value``, or None unless the encoding is strict DER:
    one SEQUENCE of two minimal, positive INTEGERs and nothing after it."""
    if len(der) < 8 or der[0] != 0x30 or der[1] != len(der) - 2:  # short form: < 128 bytes
        return None
    values, pos = [], 2
    for _ in range(2):
        if pos + 2 > len(der) or der[pos] != 0x02:
            return None
        size = der[pos + 1]
        body = der[pos + 2 : pos + 2 + size]
        if size == 0 or size > 33 or len(body) != size or body[0] & 0x80:
            return None  # empty, too long, truncated or negative
        if size > 1 and body[0] == 0 and not body[1] & 0x80:
            return None  # a leading zero that is not needed
        values.append(int.from_bytes(body, "big"))
        pos += 2 + size
    if pos != len(der):
        return None
    return values[0], values[1]


def _double(p: _Jacobian) -> _Jacobian:
    x, y, z = p
    if z == 0 or y == 0:
        return _INFINITY
    yy = y * y % P
    s = 4 * x * yy % P
    zz = z * z % P
    m = 3 * (x - zz) * (x + zz) % P  # a = -3
    x3 = (m * m - 2 * s) % P
    return x3, (m * (s - x3) - 8 * yy * yy) % P, 2 * y * z % P


def _add(p: _Jacobian, q: _Jacobian) -> _Jacobian:
    x1, y1, z1 = p
    x2, y2, z2 = q
    if z1 == 0:
        return q
    if z2 == 0:
        return p
    z1z1, z2z2 = z1 * z1 % P, z2 * z2 % P
    u1, u2 = x1 * z2z2 % P, x2 * z1z1 % P
    s1, s2 = y1 * z2 * z2z2 % P, y2 * z1 * z1z1 % P
    h, r = (u2 - u1) % P, (s2 - s1) % P
    if h == 0:
        return _double(p) if r == 0 else _INFINITY
    hh = h * h % P
    hhh = h * hh % P
    v = u1 * hh % P
    x3 = (r * r - hhh - 2 * v) % P
    return x3, (r * (v - x3) - s1 * hhh) % P, h * z1 * z2 % P


def _combined(u1: int, u2: int, q: Point) -> _Jacobian:
    """u1·G + u2·Q with one shared chain of doublings (Shamir's trick)."""
    g, qj = (G[0], G[1], 1), (q[0], q[1], 1)
    table = {(1, 0): g, (0, 1): qj, (1, 1): _add(g, qj)}
    acc = _INFINITY
    for bit in range(max(u1.bit_length(), u2.bit_length()) - 1, -1, -1):
        acc = _double(acc)
        pair = ((u1 >> bit) & 1, (u2 >> bit) & 1)
        if pair != (0, 0):
            acc = _add(acc, table[pair])
    return acc


def verify(public_key: Point, message: bytes, der_signature: bytes) -> bool:
    """Whether ``der_signature`` is a valid ECDSA-SHA256 signature of ``message`` by
    ``public_key`` (SEC 1 v2 §4.1.4). Never raises for a malformed signature: it is invalid."""
    if not on_curve(public_key):
        return False
    rs = parse_der_signature(der_signature)
    if rs is None:
        return False
    r, s = rs
    if not (1 <= r < N and 1 <= s < N):
        return False
    e = int.from_bytes(hashlib.sha256(message).digest(), "big")  # 256 bits: no truncation
    w = pow(s, -1, N)
    x, _, z = _combined(e * w % N, r * w % N, public_key)
    if z == 0:
        return False
    return x * pow(z * z % P, -1, P) % P % N == r
