"""The content-addressed artifact store through publishing and download: byte-identical round
trips, resumable Range downloads, and uploads that fail (wrong digest or length, over the size
limit, cut off) leaving no version and no file behind; concurrent uploads of the same bytes."""

import hashlib
import json
import os
import socket
import threading

import pytest

from ganglion_harness import (
    artifact_files,
    assert_problem,
    model_meta,
    multipart,
    publish,
    wait_for,
)


def _blob(n, seed=b"ganglion"):
    """n deterministic, incompressible-looking bytes."""
    out = bytearray()
    h = seed
    while len(out) < n:
        h = hashlib.sha256(h).digest()
        out += h * 32
    return bytes(out[:n])


def _sha(b):
    return hashlib.sha256(b).hexdigest()


def _stored_path(digest):
    return f"{digest[:2]}/{digest}"


def _assert_nothing_kept(server, name, version="1.0.0", stored_before=()):
    """No version row, no new stored file, and (after a short poll) no temp file."""
    r = server.api("GET", f"/v1/models/{name}/versions/{version}")
    assert r.status_code == 404, f"a version was created: {r.status_code} {r.text[:300]}"
    wait_for(lambda: not artifact_files(server.data_dir)[1], timeout=30)
    stored, tmp = artifact_files(server.data_dir)
    assert not tmp, f"temporary files left in artifacts/tmp: {tmp}"
    assert stored == sorted(stored_before), f"artifacts/sha256 holds {stored}, expected {sorted(stored_before)}"


def test_push_then_download_is_byte_identical(server):
    data = _blob(3 * 1024 * 1024 + 17)
    r = publish(server, "det", data)
    assert r.status_code == 201, r.text
    v = r.json()
    digest = _sha(data)
    assert v["artifact"] == {"sha256": digest, "length": len(data), "url": f"/v1/artifacts/sha256/{digest}"}
    assert v["target"] == "models/det/1.0.0/model.onnx"
    assert artifact_files(server.data_dir) == ([_stored_path(digest)], [])

    r = server.api("GET", v["artifact"]["url"])
    assert r.status_code == 200
    assert r.content == data
    assert r.headers["Content-Length"] == str(len(data))
    assert r.headers["ETag"] == f'"sha256:{digest}"'
    assert r.headers["Accept-Ranges"] == "bytes"

    h = server.api("HEAD", v["artifact"]["url"])
    assert h.status_code == 200 and h.content == b""
    assert h.headers["Content-Length"] == str(len(data))

    # A conditional GET with the ETag: nothing to send again.
    r = server.api("GET", v["artifact"]["url"], headers={"If-None-Match": f'"sha256:{digest}"'})
    assert r.status_code == 304 and r.content == b""
    # A list, weak or not, as every route that answers 304 reads it (gn_http_etag_match).
    r = server.api("GET", v["artifact"]["url"], headers={"If-None-Match": f'"other", W/"sha256:{digest}"'})
    assert r.status_code == 304 and r.content == b""
    assert server.api("GET", v["artifact"]["url"], headers={"If-None-Match": '"other"'}).status_code == 200

    # Upper-case hex names the same artifact; unknown or malformed digests are 404.
    assert server.api("GET", f"/v1/artifacts/sha256/{digest.upper()}").content == data
    assert_problem(server.api("GET", f"/v1/artifacts/sha256/{_sha(b'other')}"), 404)
    assert_problem(server.api("GET", "/v1/artifacts/sha256/xyz"), 404)
    assert_problem(server.api("GET", "/v1/artifacts/sha256/" + "a" * 63), 404)


def test_empty_artifact_is_refused_and_a_one_byte_one_has_ranges(server):
    # A model version needs its model file: a zero-byte artifact is 400 and nothing is kept.
    assert_problem(publish(server, "empty", b""), 400, "empty")
    _assert_nothing_kept(server, "empty")
    r = publish(server, "one", b"\x01")
    assert r.status_code == 201, r.text
    url = r.json()["artifact"]["url"]
    assert r.json()["artifact"]["length"] == 1
    got = server.api("GET", url, headers={"Range": "bytes=0-"})
    assert got.status_code == 206 and got.content == b"\x01" and got.headers["Content-Range"] == "bytes 0-0/1"
    assert_problem(server.api("GET", url, headers={"Range": "bytes=1-"}), 416)


def test_resume_download_with_range(server):
    data = _blob(1_000_003)
    r = publish(server, "resume", data)
    assert r.status_code == 201, r.text
    url = r.json()["artifact"]["url"]
    size = len(data)

    # A download cut off part way: read some of the stream, then drop the connection.
    got = bytearray()
    with server.session.get(server.url + url, headers={"Authorization": f"Bearer {server.admin_token}"},
                            stream=True, timeout=30) as resp:
        assert resp.status_code == 200
        for chunk in resp.iter_content(65536):
            got += chunk
            if len(got) >= size // 2:
                break
    assert 0 < len(got) < size

    # Resume from where it stopped.
    r = server.api("GET", url, headers={"Range": f"bytes={len(got)}-"})
    assert r.status_code == 206, r.text[:200]
    assert r.headers["Content-Range"] == f"bytes {len(got)}-{size - 1}/{size}"
    assert r.headers["Content-Length"] == str(size - len(got))
    assert r.content == data[len(got):]
    assert bytes(got) + r.content == data

    # A closed range, a range running past the end (clamped), one byte at the end.
    for spec, lo, hi in [("100-199", 100, 199), (f"{size - 10}-{size + 500}", size - 10, size - 1),
                         (f"{size - 1}-{size - 1}", size - 1, size - 1), ("0-0", 0, 0)]:
        r = server.api("GET", url, headers={"Range": f"bytes={spec}"})
        assert r.status_code == 206, spec
        assert r.headers["Content-Range"] == f"bytes {lo}-{hi}/{size}", spec
        assert r.content == data[lo:hi + 1], spec

    # Suffix ranges: the last N bytes; more than the file is the whole file.
    r = server.api("GET", url, headers={"Range": "bytes=-500"})
    assert r.status_code == 206
    assert r.headers["Content-Range"] == f"bytes {size - 500}-{size - 1}/{size}"
    assert r.content == data[-500:]
    r = server.api("GET", url, headers={"Range": f"bytes=-{size * 2}"})
    assert r.status_code == 206 and r.content == data
    assert r.headers["Content-Range"] == f"bytes 0-{size - 1}/{size}"

    # Unsatisfiable: 416 with the size in Content-Range.
    for spec in (f"bytes={size}-", f"bytes={size + 1000}-{size + 2000}", "bytes=-0"):
        r = server.api("GET", url, headers={"Range": spec})
        assert_problem(r, 416)
        assert r.headers["Content-Range"] == f"bytes */{size}", spec

    # If-Range with the current ETag honours the range; with another entity, the whole file.
    etag = r.headers.get("ETag") or f'"sha256:{_sha(data)}"'
    r = server.api("GET", url, headers={"Range": "bytes=10-19", "If-Range": etag})
    assert r.status_code == 206 and r.content == data[10:20]
    r = server.api("GET", url, headers={"Range": "bytes=10-19", "If-Range": '"sha256:' + "0" * 64 + '"'})
    assert r.status_code == 200 and r.content == data

    # HEAD with a range describes the part.
    h = server.api("HEAD", url, headers={"Range": "bytes=10-"})
    assert h.status_code == 206 and h.content == b""
    assert h.headers["Content-Length"] == str(size - 10)


def test_wrong_stated_digest_keeps_nothing(server):
    data = _blob(200_000)
    meta = model_meta(sha256=_sha(data + b"x"))
    r = publish(server, "bad-digest", data, meta=meta)
    assert_problem(r, 400, "sha-256")
    _assert_nothing_kept(server, "bad-digest")
    assert_problem(server.api("GET", f"/v1/artifacts/sha256/{_sha(data)}"), 404)
    # The right digest and length are accepted.
    r = publish(server, "bad-digest", data, meta=model_meta(sha256=_sha(data).upper(), length=len(data)))
    assert r.status_code == 201, r.text


def test_wrong_stated_length_keeps_nothing(server):
    data = _blob(150_000)
    for length in (len(data) - 1, len(data) + 1, 0):
        r = publish(server, "bad-length", data, meta=model_meta(length=length, sha256=_sha(data)))
        assert_problem(r, 400)
        _assert_nothing_kept(server, "bad-length")


def test_over_the_size_limit_keeps_nothing(gangliond):
    server = gangliond(extra_args=["--max-artifact-size", "1M"])
    # Just over the limit: refused while streaming (Content-Length alone does not give it away).
    big = _blob(1024 * 1024 + 1)
    body, ctype = multipart(model_meta(), big)
    status, _, resp = server.raw_request("POST", "/v1/models/big/versions", body=body,
                                         headers={"Content-Type": ctype,
                                                  "Authorization": f"Bearer {server.admin_token}"})
    assert status == 413, resp[:300]
    _assert_nothing_kept(server, "big")

    # Chunked, so the server cannot know the size up front.
    status, _, resp = server.raw_request("POST", "/v1/models/big/versions", body=body, chunked=True,
                                         headers={"Content-Type": ctype,
                                                  "Authorization": f"Bearer {server.admin_token}"})
    assert status == 413, resp[:300]
    _assert_nothing_kept(server, "big")

    # Far over: refused from Content-Length before the body.
    body, ctype = multipart(model_meta(), _blob(6 * 1024 * 1024))
    status, _, resp = server.raw_request("POST", "/v1/models/big/versions", body=body,
                                         headers={"Content-Type": ctype,
                                                  "Authorization": f"Bearer {server.admin_token}"})
    assert status == 413, resp[:300]
    _assert_nothing_kept(server, "big")

    # A stated length over the limit is refused too.
    r = publish(server, "big", _blob(1000), meta=model_meta(length=2 * 1024 * 1024))
    assert_problem(r, 413)
    _assert_nothing_kept(server, "big")

    # Exactly the limit is fine.
    ok = _blob(1024 * 1024)
    r = publish(server, "big", ok)
    assert r.status_code == 201, r.text
    assert artifact_files(server.data_dir) == ([_stored_path(_sha(ok))], [])


def test_cut_off_upload_keeps_nothing(server):
    data = _blob(4 * 1024 * 1024)
    body, ctype = multipart(model_meta(), data)
    half = body[: len(body) // 2]
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
        s.sendall(
            (f"POST /v1/models/cut/versions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
             f"Authorization: Bearer {server.admin_token}\r\nContent-Type: {ctype}\r\n"
             f"Content-Length: {len(body)}\r\n\r\n").encode()
        )
        s.sendall(half)
        # The upload is under way: a temp file exists while the body streams in.
        assert wait_for(lambda: artifact_files(server.data_dir)[1], timeout=30), "no temp file during the upload"
    _assert_nothing_kept(server, "cut")
    # The server is fine afterwards, and the same upload done properly works.
    r = publish(server, "cut", data)
    assert r.status_code == 201, r.text
    assert artifact_files(server.data_dir) == ([_stored_path(_sha(data))], [])


def _concurrently(fns):
    results = [None] * len(fns)
    barrier = threading.Barrier(len(fns))

    def go(i):
        barrier.wait()
        results[i] = fns[i]()

    threads = [threading.Thread(target=go, args=(i,)) for i in range(len(fns))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return results


def test_concurrent_uploads_same_bytes_as_two_versions(server):
    data = _blob(6 * 1024 * 1024, seed=b"two")
    rs = _concurrently([lambda v=v: publish(server, "twin", data, meta=model_meta(v)) for v in ("1.0.0", "1.0.1")])
    assert [r.status_code for r in rs] == [201, 201], [r.text[:200] for r in rs]
    digest = _sha(data)
    versions = server.api("GET", "/v1/models/twin").json()["versions"]
    assert sorted(v["version"] for v in versions) == ["1.0.0", "1.0.1"]
    assert {v["sha256"] for v in versions} == {digest}
    assert wait_for(lambda: artifact_files(server.data_dir) == ([_stored_path(digest)], [])), artifact_files(server.data_dir)
    assert server.api("GET", f"/v1/artifacts/sha256/{digest}").content == data


def test_concurrent_uploads_of_the_same_version(server):
    data = _blob(6 * 1024 * 1024, seed=b"same")
    rs = _concurrently([lambda: publish(server, "race", data, meta=model_meta("2.0.0"))] * 2)
    assert sorted(r.status_code for r in rs) == [201, 409], [r.text[:200] for r in rs]
    assert_problem([r for r in rs if r.status_code == 409][0], 409)
    versions = server.api("GET", "/v1/models/race").json()["versions"]
    assert [v["version"] for v in versions] == ["2.0.0"]
    assert wait_for(lambda: artifact_files(server.data_dir) == ([_stored_path(_sha(data))], [])), artifact_files(server.data_dir)


def test_failed_publish_does_not_remove_bytes_another_version_uses(server):
    data = _blob(100_000, seed=b"shared")
    assert publish(server, "keep", data).status_code == 201
    # Same bytes, rejected version (stated length wrong): the stored file must stay.
    r = publish(server, "keep", data, meta=model_meta("1.0.1", length=1))
    assert_problem(r, 400)
    # Same bytes, existing version: 409, and the file stays.
    assert_problem(publish(server, "keep", data), 409)
    assert artifact_files(server.data_dir) == ([_stored_path(_sha(data))], [])
    assert server.api("GET", f"/v1/artifacts/sha256/{_sha(data)}").content == data


@pytest.mark.parametrize("parts", ["artifact-missing", "metadata-missing", "unknown-part", "nameless-part",
                                   "not-multipart"])
def test_malformed_publish_requests(server, parts):
    data = _blob(10_000)
    if parts == "not-multipart":
        assert_problem(server.api("POST", "/v1/models/m/versions", json=model_meta()), 415)
    else:
        b = f"gnb{os.getpid()}"
        meta = (f"--{b}\r\nContent-Disposition: form-data; name=\"metadata\"\r\n\r\n").encode() + \
            json.dumps(model_meta()).encode() + b"\r\n"
        art = (f"--{b}\r\nContent-Disposition: form-data; name=\"artifact\"; filename=\"m\"\r\n"
               f"Content-Type: application/octet-stream\r\n\r\n").encode() + data + b"\r\n"
        other = (f"--{b}\r\nContent-Disposition: form-data; name=\"extra\"\r\n\r\nhello\r\n").encode()
        # A part without Content-Disposition has no name (found by fuzz/multipart: it crashed gangliond).
        nameless = (f"--{b}\r\nContent-Type: application/octet-stream\r\n\r\nhello\r\n").encode()
        body = {"artifact-missing": meta, "metadata-missing": art, "unknown-part": meta + other + art,
                "nameless-part": meta + nameless + art}[parts]
        body += f"--{b}--\r\n".encode()
        r = server.api("POST", "/v1/models/m/versions", data=body,
                       headers={"Content-Type": f"multipart/form-data; boundary={b}"})
        assert_problem(r, 400)
    _assert_nothing_kept(server, "m")
