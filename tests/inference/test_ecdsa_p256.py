"""The serving image's ECDSA P-256 verifier, held against ``cryptography`` (OpenSSL).

Every verdict must be OpenSSL's: valid signatures, every single-bit flip of a signature, and
the range and encoding edge cases SEC 1 and DER define.
"""

from __future__ import annotations

import random

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)

from inference import ecdsa_p256

ALGORITHM = ec.ECDSA(hashes.SHA256())


def _openssl_verdict(key: ec.EllipticCurvePublicKey, message: bytes, der: bytes) -> bool:
    try:
        key.verify(der, message, ALGORITHM)
    except (InvalidSignature, ValueError):
        return False
    return True


def _point(key: ec.EllipticCurvePrivateKey) -> ecdsa_p256.Point:
    spki = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return ecdsa_p256.public_key_from_spki(spki)


@pytest.fixture(scope="module")
def keys() -> list[ec.EllipticCurvePrivateKey]:
    return [ec.generate_private_key(ec.SECP256R1()) for _ in range(8)]


def test_valid_signatures_verify_and_other_messages_do_not(keys):
    rng = random.Random(7)
    for i in range(200):
        key = keys[i % len(keys)]
        message = rng.randbytes(rng.randrange(0, 300))
        der = key.sign(message, ALGORITHM)
        assert ecdsa_p256.verify(_point(key), message, der)
        assert not ecdsa_p256.verify(_point(key), message + b"\0", der)
        assert not ecdsa_p256.verify(_point(keys[(i + 1) % len(keys)]), message, der)


def test_every_bit_flip_of_a_signature_gets_openssls_verdict(keys):
    key, message = keys[0], b"DSSEv1 28 application/vnd.in-toto+json 2 {}"
    der = key.sign(message, ALGORITHM)
    for position in range(len(der)):
        for bit in range(8):
            flipped = bytearray(der)
            flipped[position] ^= 1 << bit
            ours = ecdsa_p256.verify(_point(key), message, bytes(flipped))
            assert ours == _openssl_verdict(key.public_key(), message, bytes(flipped))
            assert not ours


def test_both_s_values_verify_as_in_openssl(keys):
    """ECDSA accepts s and n - s alike (no low-S rule, unlike Bitcoin): so does OpenSSL."""
    key, message = keys[1], b"release"
    r, s = decode_dss_signature(key.sign(message, ALGORITHM))
    other = encode_dss_signature(r, ecdsa_p256.N - s)
    assert ecdsa_p256.verify(_point(key), message, other)
    assert _openssl_verdict(key.public_key(), message, other)


@pytest.mark.parametrize(
    "r_s",
    [
        (0, 1),
        (1, 0),
        ("n", 1),
        (1, "n"),
        ("n+r", "s"),  # r + n: the same residue, out of range
        ("r", "n+s"),
    ],
)
def test_out_of_range_scalars_are_refused(keys, r_s):
    key, message = keys[2], b"release"
    r, s = decode_dss_signature(key.sign(message, ALGORITHM))
    n = ecdsa_p256.N
    values = {"n": n, "n+r": n + r, "n+s": n + s, "r": r, "s": s}
    rr, ss = (values.get(v, v) if isinstance(v, str) else v for v in r_s)
    der = encode_dss_signature(rr, ss)
    assert not ecdsa_p256.verify(_point(key), message, der)
    assert not _openssl_verdict(key.public_key(), message, der)


def test_non_der_encodings_are_refused(keys):
    key, message = keys[3], b"release"
    der = key.sign(message, ALGORITHM)
    r, _ = decode_dss_signature(der)
    r_bytes = r.to_bytes(33, "big")  # a leading zero that DER forbids unless needed
    body = b"\x02\x21" + r_bytes + der[4 + der[3] :]
    padded = b"\x30" + bytes([len(body)]) + body
    cases = [
        padded if r_bytes[1] < 0x80 else None,
        der + b"\x00",  # trailing data
        der[:-1],  # truncated
        b"\x31" + der[1:],  # a SET, not a SEQUENCE
        b"",
    ]
    for case in filter(None, cases):
        assert not ecdsa_p256.verify(_point(key), message, case)
        assert not _openssl_verdict(key.public_key(), message, case)


def test_keys_off_the_curve_or_in_another_encoding_are_refused(keys):
    spki = (
        keys[4]
        .public_key()
        .public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    off_curve = bytearray(spki)
    off_curve[-1] ^= 1
    compressed = (
        keys[4]
        .public_key()
        .public_bytes(serialization.Encoding.X962, serialization.PublicFormat.CompressedPoint)
    )
    p384 = (
        ec.generate_private_key(ec.SECP384R1())
        .public_key()
        .public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    for bad in (bytes(off_curve), compressed, p384, spki[:-1]):
        with pytest.raises(ecdsa_p256.InvalidKey):
            ecdsa_p256.public_key_from_spki(bad)
    assert not ecdsa_p256.verify((0, 0), b"m", keys[4].sign(b"m", ALGORITHM))
