"""Trial mode: gangliond with only --data-dir runs its own PostgreSQL under DATA_DIR/pg, and
stops it again on SIGTERM."""

import os
import pwd
import time

import pytest

from ganglion_harness import IS_ROOT, NO_TOKEN, PG_USER, enroll_device, list_all, postgres_pids_for


def _wait_gone(pgdata, timeout=60):
    deadline = time.monotonic() + timeout
    while postgres_pids_for(pgdata) and time.monotonic() < deadline:
        time.sleep(0.2)
    return postgres_pids_for(pgdata)


@pytest.mark.slow
def test_private_cluster(gangliond):
    s = gangliond(private=True)
    pgdir = s.data_dir / "pg"
    assert s.admin_token, "no admin.token in private-cluster mode"
    found = [p.parent for p in pgdir.glob("**/PG_VERSION") if p.parent.parent.name != "base"]
    assert len(found) == 1, f"no (or several) clusters under {pgdir}: {found}"
    pgdata = found[0]
    assert (pgdata / "postmaster.pid").exists(), "the private cluster is not running"
    pids = postgres_pids_for(pgdir)
    assert pids, "no postgres process for the private cluster"
    if IS_ROOT:
        # PostgreSQL refuses root; gangliond must hand the cluster to the postgres user
        owners = {pwd.getpwuid(os.stat(f"/proc/{p}").st_uid).pw_name for p in pids}
        assert owners == {PG_USER}, f"postgres runs as {owners}"
        assert pwd.getpwuid(os.stat(pgdata).st_uid).pw_name == PG_USER
    assert s.api("GET", "/readyz", token=NO_TOKEN).json() == {"status": "ready"}

    # it is a working server, not just a ready one
    dev = enroll_device(s, labels={"site": "lab"}, name="trial")
    assert [d["name"] for d in list_all(s, "/v1/devices")[0]] == ["trial"]

    s.stop()  # exit status 0 within 15 s
    left = _wait_gone(pgdir)
    assert not left, f"postgres processes left for {pgdir}: {left}"
    assert not (pgdata / "postmaster.pid").exists(), "postmaster.pid left behind"

    # a second start reuses the cluster and its data (no second initdb, same admin token)
    again = gangliond(private=True, data_dir=s.data_dir, admin_token=s.admin_token)
    r = again.api("GET", f"/v1/devices/{dev.id}")
    assert r.status_code == 200 and r.json()["name"] == "trial", r.text
    again.stop()
    assert not _wait_gone(pgdir), "postgres left running after the second stop"
    assert not (pgdata / "postmaster.pid").exists()

