"""Health, readiness and metrics: what a load balancer and a Prometheus scraper see."""

import time
import uuid

from ganglion_harness import NO_TOKEN, assert_problem, metric_value, parse_metrics, wait_for


def test_healthz_and_readyz(server):
    r = server.api("GET", "/healthz", token=NO_TOKEN)
    assert r.status_code == 200
    assert r.json() == {"status": "ok"}
    r = server.api("GET", "/readyz", token=NO_TOKEN)
    assert r.status_code == 200
    assert r.json() == {"status": "ready"}


def test_every_response_has_a_distinct_request_id(server):
    ids = []
    for method, path, token in [
        ("GET", "/healthz", NO_TOKEN),
        ("GET", "/v1/devices", NO_TOKEN),  # 401
        ("GET", "/v1/devices", server.admin_token),
        ("GET", "/v1/devices/" + str(uuid.uuid4()), server.admin_token),  # 404
        ("GET", "/no/such/route", NO_TOKEN),  # 404
    ]:
        r = server.api(method, path, token=token)
        rid = r.headers.get("X-Request-Id")
        assert rid, f"{method} {path} -> {r.status_code} without X-Request-Id"
        ids.append(rid)
    assert len(set(ids)) == len(ids), ids


def test_unknown_route_is_a_problem_404(server):
    assert_problem(server.api("GET", "/v1/nothing-here"), 404)


def _metrics(server):
    r = server.api("GET", "/metrics", token=NO_TOKEN)
    assert r.status_code == 200
    assert r.headers["Content-Type"].startswith("text/plain"), r.headers["Content-Type"]
    return parse_metrics(r.text)


def _wait_count(server, before, expected_delta, **labels):
    """Counters are bumped when libmicrohttpd completes a request, after the answer is sent:
    poll (the deadline only bounds a broken run)."""
    deadline = time.monotonic() + 30
    while True:
        now = metric_value(_metrics(server), "gangliond_http_requests_total", **labels)
        if now - before >= expected_delta or time.monotonic() > deadline:
            return now - before
        time.sleep(0.05)


def test_metrics_count_requests_by_route_method_and_status(server):
    m0 = _metrics(server)
    ok0 = metric_value(m0, "gangliond_http_requests_total", route="/v1/devices", method="GET", status="200")
    unauth0 = metric_value(m0, "gangliond_http_requests_total", route="/v1/devices", method="GET", status="401")
    health0 = metric_value(m0, "gangliond_http_requests_total", route="/healthz", method="GET", status="200")

    for _ in range(3):
        assert server.api("GET", "/v1/devices").status_code == 200
    for _ in range(2):
        assert server.api("GET", "/v1/devices", token=NO_TOKEN).status_code == 401
    for _ in range(4):
        assert server.api("GET", "/healthz", token=NO_TOKEN).status_code == 200

    assert _wait_count(server, ok0, 3, route="/v1/devices", method="GET", status="200") == 3
    assert _wait_count(server, unauth0, 2, route="/v1/devices", method="GET", status="401") == 2
    assert _wait_count(server, health0, 4, route="/healthz", method="GET", status="200") == 4


def test_metrics_use_route_templates_not_raw_paths(server):
    ids = [str(uuid.uuid4()) for _ in range(3)]
    before = metric_value(_metrics(server), "gangliond_http_requests_total", route="/v1/devices/{id}", method="GET",
                          status="404")
    for i in ids:
        assert server.api("GET", "/v1/devices/" + i).status_code == 404
    assert _wait_count(server, before, 3, route="/v1/devices/{id}", method="GET", status="404") == 3
    samples = _metrics(server)
    for name, labels, _ in samples:
        for v in labels.values():
            assert not any(i in v for i in ids), f"raw path in metric label: {name}{labels}"


def _histograms(samples):
    """Returns {labels without le: (sorted [(le, cumulative count)], _count, _sum)}."""
    series = {}
    for n, l, v in samples:
        if n == "gangliond_http_request_duration_seconds_bucket":
            key = tuple(sorted((k, x) for k, x in l.items() if k != "le"))
            le = float("inf") if l["le"] == "+Inf" else float(l["le"])
            series.setdefault(key, []).append((le, v))
    out = {}
    for key, bs in series.items():
        labels = dict(key)
        count = sum(v for n, l, v in samples if n == "gangliond_http_request_duration_seconds_count" and l == labels)
        total = sum(v for n, l, v in samples if n == "gangliond_http_request_duration_seconds_sum" and l == labels)
        out[key] = (sorted(bs), count, total)
    return out


def test_metrics_latency_histogram(server):
    before = _histograms(_metrics(server))
    assert before, "no gangliond_http_request_duration_seconds histogram"
    for _ in range(5):
        assert server.api("GET", "/v1/devices").status_code == 200
    # Observed when each request completes, after its answer was sent: poll, counting the
    # scrapes, which are requests too (the deadline only bounds a broken run).
    scrapes = [0]

    def total():
        scrapes[0] += 1
        return sum(c for _, c, _ in _histograms(_metrics(server)).values())

    base = sum(c for _, c, _ in before.values())
    assert wait_for(lambda: total() - base >= 5, 30, 0.05), "the histogram did not count 5 requests"
    after = _histograms(_metrics(server))
    for key, (bs, count, total_s) in after.items():
        assert bs[-1][0] == float("inf"), f"no +Inf bucket for {key}"
        values = [v for _, v in bs]
        assert values == sorted(values), f"buckets not cumulative for {key}: {bs}"
        assert count == values[-1], f"_count {count} != +Inf bucket {values[-1]} for {key}"
        assert 0 < total_s < count * 10, f"implausible _sum {total_s} for {count} requests"
    grew = sum(c for _, c, _ in after.values()) - base
    # 5 requests, the first scrape, and at most every scrape since (the last may not be counted yet).
    assert 5 <= grew <= 5 + 1 + scrapes[0], f"histogram count grew by {grew} after 5 requests and {scrapes[0]} scrapes"


def test_metrics_show_database_pool(server):
    names = {n for n, _, _ in _metrics(server)}
    for want in ("gangliond_db_pool_connections", "gangliond_db_pool_in_use", "gangliond_db_pool_waits_total"):
        assert want in names, f"{want} missing from /metrics"


def test_readyz_follows_the_database(server, pg, db):
    """Cut the database off: /readyz must say 503 (problem+json) while /healthz stays 200;
    allow connections again: /readyz recovers without a restart."""
    try:
        pg.sql(f"ALTER DATABASE {db} ALLOW_CONNECTIONS false")
        pg.sql(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{db}'")
        deadline = time.monotonic() + 60
        while True:
            r = server.api("GET", "/readyz", token=NO_TOKEN)
            if r.status_code != 200 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert_problem(r, 503)
        assert server.api("GET", "/healthz", token=NO_TOKEN).status_code == 200
    finally:
        pg.sql(f"ALTER DATABASE {db} ALLOW_CONNECTIONS true")
    deadline = time.monotonic() + 60
    while server.api("GET", "/readyz", token=NO_TOKEN).status_code != 200:
        assert time.monotonic() < deadline, "/readyz did not recover after the database came back"
        time.sleep(0.2)
    assert server.api("GET", "/v1/devices").status_code == 200


def test_missing_database_is_never_ready(gangliond, pg):
    """Pointed at a database that does not exist, gangliond must either exit non-zero or
    answer /readyz with 503; it must never claim to be ready."""
    s = gangliond(database="no_such_db_here", wait=False)
    deadline = time.monotonic() + 60
    saw = None
    while time.monotonic() < deadline:
        if not s.running():
            break
        try:
            r = s.api("GET", "/readyz", token=NO_TOKEN, timeout=2)
            assert r.status_code != 200, "ready without a database"
            if r.status_code == 503:
                saw = r
                break
        except Exception as e:  # not listening yet
            if isinstance(e, AssertionError):
                raise
        time.sleep(0.2)
    if s.running():
        assert saw is not None, "neither exited nor answered /readyz with 503 within 60 s"
        assert_problem(saw, 503)
    else:
        code = s.proc.returncode
        s.start_failed = True  # expected; the teardown need not complain that it is gone
        assert code != 0, "exited with status 0 although the database does not exist"
        assert "no_such_db_here" in s.log() or "database" in s.log().lower(), s.log()


def test_readyz_is_503_until_the_schema_is_migrated(server, pg, db):
    """A database behind the binary's migrations (as during an upgrade by another replica):
    /readyz says 503 with the reason, /healthz stays 200; once migrated again it is ready."""
    latest = pg.sql("SELECT max(version) FROM schema_migrations", db)
    row = pg.sql(f"SELECT row_to_json(m)::text FROM schema_migrations m WHERE version = {latest}", db)
    pg.sql(f"DELETE FROM schema_migrations WHERE version = {latest}", db)
    try:
        r = server.api("GET", "/readyz", token=NO_TOKEN)
        assert_problem(r, 503, f"needs {latest}")
        assert server.api("GET", "/healthz", token=NO_TOKEN).status_code == 200
    finally:
        pg.sql(f"INSERT INTO schema_migrations SELECT * FROM json_populate_record(NULL::schema_migrations, '{row}')", db)
    r = server.api("GET", "/readyz", token=NO_TOKEN)
    assert r.status_code == 200 and r.json() == {"status": "ready"}, r.text
