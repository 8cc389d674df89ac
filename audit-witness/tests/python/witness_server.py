"""A tlog-witness server written from the C2SP texts, state in memory.

usage: witness_server.py NAME WITNESS_SEED_HEX LOG_VKEY [LOG_VKEY ...]
Prints `listening http://127.0.0.1:PORT` and `vkey <cosigner vkey>`."""

import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

import c2sp


class Witness:
    def __init__(self, name, key, logs):
        self.name = name
        self.key = key
        self.logs = {}  # origin -> [(key hash, public key)]
        for text in logs:
            origin, type_byte, public = c2sp.parse_vkey(text)
            assert type_byte == 0x01
            self.logs.setdefault(origin, []).append((c2sp.key_hash(origin, 0x01, public), public))
        self.state = {}  # origin -> (size, root)
        self.lock = threading.Lock()

    def add_checkpoint(self, data: bytes):
        """Returns (status, content type, body)."""
        try:
            text = data.decode()
            head, rest = text.split("\n", 1)
            assert head.startswith("old ")
            old_text = head[4:]
            assert old_text.isdigit() and (old_text == "0" or not old_text.startswith("0"))
            old = int(old_text)
            proof = []
            while True:
                line, rest = rest.split("\n", 1)
                if line == "":
                    break
                proof.append(c2sp.unb64(line))
                assert len(proof[-1]) == 32
            assert len(proof) <= 63
            split = rest.rindex("\n\n")
            body, signatures = rest[: split + 1], rest[split + 2:]
            assert signatures.endswith("\n")
            origin, size_text, root64 = body.split("\n")[:3]
            assert size_text.isdigit()
            size, root = int(size_text), c2sp.unb64(root64)
            assert len(root) == 32
        except (AssertionError, ValueError, UnicodeDecodeError) as error:
            return 400, "text/plain", "malformed: %r\n" % (error,)
        keys = self.logs.get(origin)
        if keys is None:
            return 404, "text/plain", "unknown origin\n"
        verified = False
        for line in signatures[:-1].split("\n"):
            try:
                name, hash4, signature = c2sp.parse_signature_line(line)
            except (AssertionError, ValueError):
                return 400, "text/plain", "malformed signature line\n"
            for known_hash, public in keys:
                if name == origin and hash4 == known_hash:
                    try:
                        Ed25519PublicKey.from_public_bytes(public).verify(signature, body.encode())
                        verified = True
                    except InvalidSignature:
                        pass
        if not verified:
            return 403, "text/plain", "no valid log signature\n"
        if old > size:
            return 400, "text/plain", "old size beyond size\n"
        with self.lock:
            latest = self.state.get(origin)
            latest_size = latest[0] if latest else 0
            if old != latest_size:
                return 409, "text/x.tlog.size", "%d\n" % latest_size
            if latest is None:
                if proof:
                    return 422, "text/plain", "proof from 0 must be empty\n"
            elif latest[0] == size:
                if latest[1] != root:
                    return 409, "text/x.tlog.size", "%d\n" % latest_size
                if proof:
                    return 422, "text/plain", "proof between equal sizes must be empty\n"
            elif not c2sp.verify_consistency(latest[0], size, latest[1], root, proof):
                return 422, "text/plain", "consistency proof does not verify\n"
            self.state[origin] = (size, root)
        return 200, "text/plain", c2sp.cosign(body, self.name, self.key, int(time.time()))


def main():
    name, seed = sys.argv[1], sys.argv[2]
    key = c2sp.private_key(seed)
    witness = Witness(name, key, sys.argv[3:])

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self):
            if self.path != "/add-checkpoint":
                self.send_error(404)
                return
            length = int(self.headers.get("Content-Length", "0"))
            if length > 65536:
                self.send_error(413)
                return
            status, content_type, body = witness.add_checkpoint(self.rfile.read(length))
            payload = body.encode()
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    print("listening http://127.0.0.1:%d" % server.server_address[1], flush=True)
    print("vkey " + c2sp.vkey(name, 0x04, c2sp.raw_public(key.public_key())), flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
