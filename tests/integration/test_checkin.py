"""Agent check-ins: 304 while nothing changed (answered from memory), and every replica sees a
change made through any other at once (PostgreSQL NOTIFY drops the remembered answer)."""

from ganglion_harness import NO_TOKEN, enroll_device, metric_value, model_meta, parse_metrics, publish, wait_for


def _checkin(server, token, etag=None, report=None):
    headers = {"If-None-Match": etag} if etag else {}
    return server.api("POST", "/v1/agent/checkin", token=token, json=report or {"agent_version": "t"},
                      headers=headers)


def _director_version(r):
    return r.json()["director_targets"]["signed"]["version"]


def _held(server):
    """(devices in the check-in cache, their bytes, devices with a last-seen record) on /metrics."""
    m = parse_metrics(server.api("GET", "/metrics", token=NO_TOKEN).text)
    return (metric_value(m, "gangliond_checkin_cache_devices"), metric_value(m, "gangliond_checkin_cache_bytes"),
            metric_value(m, "gangliond_last_seen_devices"))


def test_checkin_is_304_until_something_changes(server):
    dev = enroll_device(server)
    tok = dev.authenticate(server)
    first = _checkin(server, tok)
    assert first.status_code == 200, first.text
    etag = first.headers["ETag"]
    for _ in range(3):
        r = _checkin(server, tok, etag)
        assert r.status_code == 304 and r.headers["ETag"] == etag
    # A report that changes is still stored while the answer stays 304.
    r = _checkin(server, tok, etag, {"agent_version": "t", "last_operation": {"state": "active", "model": "m"}})
    assert r.status_code == 304
    got = server.api("GET", f"/v1/devices/{dev.id}").json()
    assert got["reported"]["last_operation"]["state"] == "active"
    # An ETag the device was never given is answered in full; If-None-Match naming the one it holds
    # among others, or weakly, is a 304 (RFC 9110) and the ETag sent back is the exact one, never
    # the header echoed.
    assert _checkin(server, tok, '"dt-999"').status_code == 200
    for near in (etag[:-1], etag.replace('"dt-', '"dt-+')):
        r = _checkin(server, tok, near)
        assert r.status_code == 200 and r.headers["ETag"] == etag, (near, r.status_code)
    for same in (etag + ', "x"', '"x", ' + etag, "W/" + etag):
        r = _checkin(server, tok, same)
        assert r.status_code == 304 and r.headers["ETag"] == etag, (same, r.status_code, r.headers.get("ETag"))
    assert _checkin(server, tok, etag).status_code == 304


def test_a_change_through_one_replica_is_seen_by_the_other(gangliond):
    a = gangliond()
    b = gangliond(admin_token=a.admin_token)
    assert publish(a, "det", b"model-bytes", meta=model_meta("1.0.0")).status_code == 201
    dev = enroll_device(a)
    tok = dev.authenticate(b)
    first = _checkin(b, tok)
    etag = first.headers["ETag"]
    assert _checkin(b, tok, etag).status_code == 304  # b now answers from memory
    # b holds this one device's answer and last-seen time (the signing NOTIFY of its first
    # check-in may drop the answer once: a next 304 brings it back); a has seen nothing of it.
    assert wait_for(lambda: _checkin(b, tok, etag).status_code == 304 and _held(b)[0] == 1, 30, 0.1), _held(b)
    cached, cached_bytes, seen = _held(b)
    assert cached_bytes > 0 and seen == 1, _held(b)
    assert _held(a)[0] == 0 and _held(a)[2] == 0, _held(a)

    r = a.api("PUT", f"/v1/devices/{dev.id}/desired", json={"model": "det", "version": "1.0.0"})
    assert r.status_code == 200, r.text
    # The change made on a drops b's answer from b's memory, without a check-in.
    assert wait_for(lambda: _held(b)[0] == 0, 60, 0.05), _held(b)
    # b must not keep saying "nothing changed": NOTIFY reaches it within moments (the deadline
    # only bounds a broken run).
    answers = []

    def changed():
        answers.append(_checkin(b, tok, etag))
        return answers[-1].status_code == 200

    assert wait_for(changed, 60, 0.05), f"replica b kept answering {answers[-1].status_code} after the change on a"
    r = answers[-1]
    targets = r.json()["director_targets"]["signed"]["targets"]
    assert list(targets) == ["models/det/1.0.0/model.onnx"]
    assert _director_version(r) > _director_version(first)
