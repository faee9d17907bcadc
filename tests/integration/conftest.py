"""pytest fixtures for the gangliond integration tests: one throwaway PostgreSQL cluster per
session, a fresh database per test, and gangliond processes that are always torn down (and
must exit cleanly on SIGTERM). The helpers themselves live in ganglion_harness.py."""

import os
import shutil
import signal
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from ganglion_harness import (  # noqa: E402
    PG_BINDIR,
    Contract,
    Gangliond,
    Postgres,
    as_pg_user,
    make_dir,
    new_tmp_base,
    run,
)


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: takes several seconds (initdb, sleeps past expiry)")
    # A harness that times out sends SIGTERM; treat it like ^C so that the fixtures still stop
    # gangliond and PostgreSQL instead of leaving them running.
    def interrupt(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, interrupt)


@pytest.fixture(scope="session")
def tmp_base():
    """The session's scratch directory; removed at the end unless GANGLION_KEEP_TMP is set."""
    base = new_tmp_base()
    yield base
    if not os.environ.get("GANGLION_KEEP_TMP"):
        shutil.rmtree(base, ignore_errors=True)
    else:
        print(f"\nkept {base}")


@pytest.fixture(scope="session")
def pg(tmp_base):
    """A PostgreSQL 15 cluster shared by the session, on a Unix socket only."""
    cluster = Postgres(tmp_base / "pg")
    cluster.initdb()
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def db(pg):
    """A fresh, empty database for this test; returns its name."""
    return pg.create_database()


@pytest.fixture
def workdir(tmp_base, request):
    """A per-test directory the PostgreSQL user can traverse."""
    name = "".join(c if c.isalnum() else "_" for c in request.node.name)[:40]
    return make_dir(tmp_base / f"{name}-{os.getpid()}-{id(request) % 100000}", 0o711)


@pytest.fixture
def gangliond(pg, db, workdir):
    """Factory: gangliond(database=db name | None for private-cluster mode, data_dir=...,
    extra_args=[...], admin_token=..., wait=True, timeout=..., tls_ca=CA file for an HTTPS server) starts a server and returns a
    Gangliond. Every server still running at the end of the test gets SIGTERM and must exit 0
    within STOP_TIMEOUT (30 s) with no sanitizer report; its log is printed (pytest shows it on failure)."""
    servers = []
    counter = [0]

    def start(database=db, data_dir=None, extra_args=(), admin_token=None, wait=True, timeout=None, private=False,
              tls_ca=None):
        counter[0] += 1
        url = None if private else pg.dsn(database)
        s = Gangliond(
            workdir / f"srv{counter[0]}",
            database_url=url,
            data_dir=data_dir,
            extra_args=extra_args,
            admin_token=admin_token,
            tls_ca=tls_ca,
        )
        servers.append(s)
        s.start(wait=False)
        if wait:
            s.wait_ready(timeout or (120 if private else 90))
        return s

    yield start

    errors = []
    for s in servers:
        try:
            s.stop(check=True)
        except Exception as e:  # keep going: every server and cluster must be stopped
            errors.append(str(e))
        finally:
            print(f"\n--- gangliond log ({s.logfile}) ---\n{s.log()}")
        # gangliond logs what must never happen (an undocumented audit action, a nested
        # transaction...) as event=bug and carries on; a test that provokes one fails.
        try:
            bugs = [ln for ln in open(s.logfile, errors="replace") if "event=bug" in ln]
        except FileNotFoundError:
            bugs = []
        if bugs:
            errors.append(f"gangliond logged {len(bugs)} bug(s):\n" + "".join(bugs[:5]))
        if s.database_url is not None:
            continue
        for pid_file in (s.data_dir / "pg").glob("**/postmaster.pid"):
            # A private cluster outlived its gangliond: stop it so nothing leaks, and fail.
            pgdata = pid_file.parent
            errors.append(f"private cluster {pgdata} still running after gangliond stopped")
            run(as_pg_user([PG_BINDIR / "pg_ctl", "-D", pgdata, "-m", "immediate", "-w", "stop"]),
                check=False)
    if errors:
        pytest.fail("\n\n".join(errors), pytrace=False)


@pytest.fixture
def server(gangliond):
    """A running gangliond on this test's fresh database, with its admin token."""
    s = gangliond()
    assert s.admin_token, f"no {s.data_dir}/admin.token after start-up"
    return s


@pytest.fixture(scope="session")
def contract():
    return Contract()

