"""A tlog-witness client written from the C2SP texts: drives a witness
through each status and checks its cosignatures.

usage: witness_client.py URL WITNESS_VKEY ORIGIN LOG_SEED_HEX
Prints `log-vkey <vkey>` then `ok`; exits non-zero on any mismatch."""

import sys
import time
import urllib.error
import urllib.request

import c2sp


def post(url, body: str):
    request = urllib.request.Request(url + "/add-checkpoint", data=body.encode(), method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.headers.get("Content-Type", ""), response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.headers.get("Content-Type", ""), error.read().decode()


def request_body(old, proof, note):
    return "old %d\n" % old + "".join(c2sp.b64(h) + "\n" for h in proof) + "\n" + note


def main():
    url, witness_vkey, origin, seed = sys.argv[1:5]
    w_name, w_type, w_public = c2sp.parse_vkey(witness_vkey)
    assert w_type == 0x04, "witness vkey must be a cosignature key"
    log_key = c2sp.private_key(seed)
    print("log-vkey " + c2sp.vkey(origin, 0x01, c2sp.raw_public(log_key.public_key())), flush=True)
    leaves = [c2sp.leaf_hash(b"py-%d" % i) for i in range(20)]

    def note(size, key=log_key, name=origin):
        body = c2sp.checkpoint_body(name, size, c2sp.mth(leaves[:size]))
        return body, c2sp.sign_note(body, name, key)

    def expect_cosigned(old, size):
        body, text = note(size)
        status, _, answer = post(url, request_body(old, c2sp.consistency_proof(old, leaves[:size]), text))
        assert status == 200, (status, answer)
        lines = answer.splitlines(keepends=True)
        assert lines and all(line.startswith(c2sp.EM_DASH) and line.endswith("\n") for line in lines), answer
        timestamps = [c2sp.verify_cosignature(body, line, w_name, w_public) for line in lines
                      if c2sp.parse_signature_line(line)[0] == w_name]
        assert len(timestamps) == 1, answer
        assert abs(timestamps[0] - time.time()) < 300, timestamps

    expect_cosigned(0, 4)
    expect_cosigned(4, 9)
    expect_cosigned(9, 9)

    # 409: a stale old size; the body is the latest size, text/x.tlog.size.
    _, text = note(12)
    status, content_type, answer = post(url, request_body(4, c2sp.consistency_proof(4, leaves[:12]), text))
    assert (status, content_type.split(";")[0], answer) == (409, "text/x.tlog.size", "9\n"), (status, content_type, answer)
    # 422: a proof from the right size that does not verify.
    proof = c2sp.consistency_proof(9, leaves[:12])
    proof[0] = bytes(32)
    status, _, answer = post(url, request_body(9, proof, text))
    assert status == 422, (status, answer)
    # 400: old size beyond the checkpoint size; and garbage.
    status, _, _ = post(url, request_body(13, [], text))
    assert status == 400, status
    status, _, _ = post(url, "old zero\n\n" + text)
    assert status == 400, status
    # 403: signed by a key the witness does not know for this origin.
    _, forged = note(12, key=c2sp.private_key("ab" * 32))
    status, _, _ = post(url, request_body(9, c2sp.consistency_proof(9, leaves[:12]), forged))
    assert status == 403, status
    # 404: an origin the witness does not serve.
    _, stranger = note(3, name="example.test/unknown")
    status, _, _ = post(url, request_body(0, [], stranger))
    assert status == 404, status
    # And the honest request still goes through.
    expect_cosigned(9, 12)
    print("ok", flush=True)


if __name__ == "__main__":
    main()
