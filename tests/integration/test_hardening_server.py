"""The server's answers to the attacks and faults of issue 17 (items 9-16): replayed check-ins,
floods of unauthenticated requests, slow clients, a hung database, artifacts without a committed
version, devices reaching for models not meant for them, empty artifacts, and libmicrohttpd's own
refusals."""

import hashlib

from ganglion_harness import (
    assert_problem,
    model_meta,
    publish,
)


def _sha(data):
    return hashlib.sha256(data).hexdigest()


# --- 15: an empty artifact is not a model -------------------------------------------------------
def test_zero_byte_artifact_is_refused(server):
    r = publish(server, "empty", b"")
    assert_problem(r, 400, "empty")
    assert server.api("GET", "/v1/models/empty/versions/1.0.0").status_code == 404
    assert_problem(server.api("GET", f"/v1/artifacts/sha256/{_sha(b'')}"), 404)
    # Stating a length of 0 is refused before any byte arrives, with the same clear reason.
    assert_problem(publish(server, "empty", b"", meta=model_meta(length=0)), 400, "0")
    # One byte is a (tiny) model.
    assert publish(server, "empty", b"\0").status_code == 201
