"""C2SP signed-note, tlog-checkpoint, tlog-cosignature and RFC 6962 pieces,
written from the specification texts, independent of the Rust code.
Uses only the standard library and `cryptography`."""

import base64
import hashlib

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

EM_DASH = "\u2014"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def unb64(text: str) -> bytes:
    return base64.b64decode(text.encode(), validate=True)


def raw_public(key) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def key_hash(name: str, type_byte: int, public: bytes) -> bytes:
    return hashlib.sha256(name.encode() + b"\n" + bytes([type_byte]) + public).digest()[:4]


def vkey(name: str, type_byte: int, public: bytes) -> str:
    return "%s+%s+%s" % (name, key_hash(name, type_byte, public).hex(), b64(bytes([type_byte]) + public))


def parse_vkey(text: str):
    name, hash_hex, key64 = text.split("+", 2)
    raw = unb64(key64)
    type_byte, public = raw[0], raw[1:]
    assert len(public) == 32, "Ed25519 key"
    assert key_hash(name, type_byte, public).hex() == hash_hex, "key hash"
    return name, type_byte, public


def private_key(seed_hex: str) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(bytes.fromhex(seed_hex))


# RFC 6962 section 2.1
def leaf_hash(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def split_point(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def mth(leaves):
    if not leaves:
        return hashlib.sha256(b"").digest()
    if len(leaves) == 1:
        return leaves[0]
    k = split_point(len(leaves))
    return node_hash(mth(leaves[:k]), mth(leaves[k:]))


def consistency_proof(m: int, leaves):
    """PROOF(m, D[n]) of RFC 6962 section 2.1.2."""

    def subproof(m, leaves, complete):
        n = len(leaves)
        if m == n:
            return [] if complete else [mth(leaves)]
        k = split_point(n)
        if m <= k:
            return subproof(m, leaves[:k], complete) + [mth(leaves[k:])]
        return subproof(m - k, leaves[k:], False) + [mth(leaves[:k])]

    if m == 0 or m == len(leaves):
        return []
    return subproof(m, leaves, True)


def verify_consistency(first, second, first_hash, second_hash, proof) -> bool:
    """RFC 9162 section 2.1.4.2."""
    if first == second:
        return not proof and first_hash == second_hash
    if first == 0:
        return not proof
    if first > second or not proof:
        return False
    path = list(proof)
    if first & (first - 1) == 0:
        path.insert(0, first_hash)
    fn, sn = first - 1, second - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    return sn == 0 and fr == first_hash and sr == second_hash


def checkpoint_body(origin: str, size: int, root: bytes) -> str:
    return "%s\n%d\n%s\n" % (origin, size, b64(root))


def sign_note(body: str, name: str, key: Ed25519PrivateKey) -> str:
    public = raw_public(key.public_key())
    signature = key.sign(body.encode())
    return body + "\n" + "%s %s %s\n" % (EM_DASH, name, b64(key_hash(name, 0x01, public) + signature))


def cosignature_message(body: str, timestamp: int) -> bytes:
    return ("cosignature/v1\ntime %d\n" % timestamp).encode() + body.encode()


def cosign(body: str, name: str, key: Ed25519PrivateKey, timestamp: int) -> str:
    public = raw_public(key.public_key())
    signature = key.sign(cosignature_message(body, timestamp))
    payload = key_hash(name, 0x04, public) + timestamp.to_bytes(8, "big") + signature
    return "%s %s %s\n" % (EM_DASH, name, b64(payload))


def parse_signature_line(line: str):
    assert line.startswith(EM_DASH + " "), "signature line prefix"
    name, sig64 = line[2:].rstrip("\n").split(" ", 1)
    raw = unb64(sig64)
    return name, raw[:4], raw[4:]


def verify_cosignature(body: str, line: str, name: str, public: bytes):
    """Returns the timestamp of a valid cosignature line of (name, public), else raises."""
    line_name, hash4, payload = parse_signature_line(line)
    assert line_name == name and hash4 == key_hash(name, 0x04, public), "not this witness"
    assert len(payload) == 72, "timestamped Ed25519 signature"
    timestamp = int.from_bytes(payload[:8], "big")
    Ed25519PublicKey.from_public_bytes(public).verify(payload[8:], cosignature_message(body, timestamp))
    return timestamp
