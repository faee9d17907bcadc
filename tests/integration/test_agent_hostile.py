"""ganglion-agent against a hostile image repository (hostile_server.py): a proxy in front of the
real gangliond serves TUF metadata signed with keys the test holds, so each test can serve what a
thief of the repository's keys or a man in the middle could. Every test starts from an agent of
its own that trusts the test's root and serves det 1.0.0, then the director assigns another
version and the hostile metadata is what the agent finds. The agent must refuse (and keep 1.0.0
serving) or, where a control says so, install.

Models: BUILD/tests/models/{v1,v2}.{onnx,json} (`make tests/models/stamp`)."""

import hashlib
import json
import os
import time

import pytest

from ganglion_harness import TEST_MODELS, Agent, Gangliond, make_dir, publish, wait_for
from hostile_server import HostileProxy, HostileRepo, junk_signatures, keyid, proc_usage, sanitized

MODEL = "det"
# Must match the limits of lib/tufclient.h and lib/tuf.h (stated in docs/DESIGN.md).
MAX_ROOT_ROTATIONS = 256
MAX_TIMESTAMP_BYTES = 16 * 1024
MAX_SIGNATURES = 256


# --- models ---------------------------------------------------------------------------------
def _meta(name):
    path = TEST_MODELS / f"{name}.json"
    if not path.exists():
        pytest.fail(f"{path} missing: `make check` builds it (or run `make tests/models/stamp` in the build directory)")
    return json.loads(path.read_text())


def _onnx(name):
    return (TEST_MODELS / f"{name}.onnx").read_bytes()


def push(srv, version, artifact, like):
    r = publish(srv, MODEL, artifact, meta=dict(_meta(like), version=version))
    assert r.status_code == 201, f"publish {MODEL} {version} -> {r.status_code} {r.text[:300]}"
    return hashlib.sha256(artifact).hexdigest()


@pytest.fixture(scope="module")
def srv(pg, tmp_base):
    """One gangliond for the module (agents check in every second), det 1.0.0 (v1) and 2.0.0
    (v2) published."""
    db = pg.create_database()
    s = Gangliond(make_dir(tmp_base / "hostsrv", 0o711), database_url=pg.dsn(db),
                  extra_args=["--agent-poll-interval", "1s"])
    s.start()
    try:
        s.sha = {"1.0.0": push(s, "1.0.0", _onnx("v1"), "v1"), "2.0.0": push(s, "2.0.0", _onnx("v2"), "v2")}
        yield s
    finally:
        try:
            s.stop(check=True)
        finally:
            print(f"\n--- gangliond log ({s.logfile}) ---\n{s.log()}")


class Hostile:
    """The test's repository, the proxy, and an agent enrolled through it serving 1.0.0."""

    def __init__(self, srv, repo, proxy, agent):
        self.srv, self.repo, self.proxy, self.agent = srv, repo, proxy, agent

    def assign(self, version):
        r = self.srv.api("PUT", f"/v1/devices/{self.agent.device_id}/desired", json={"model": MODEL, "version": version})
        assert r.status_code == 200, r.text

    def failure(self, version, timeout=30):
        """Waits for the agent to log a failed update of version; returns that log line."""
        def find():
            lines = self.agent.logfile.read_text(errors="replace").splitlines()
            return next((l for l in lines if "event=update state=failed" in l and f"version={version} " in l), None)
        line = wait_for(find, timeout, 0.05)
        assert line, f"no failed update of {version} within {timeout} s\n{self.agent.log()[-4000:]}"
        return line

    def serves(self, version, timeout=30):
        """Waits until version serves, and checks it answers its release's sample."""
        got = wait_for(lambda: (self.agent.serving() or (None,))[0] == version, timeout, 0.1)
        assert got, f"{version} does not serve within {timeout} s (serves {self.agent.serving()})\n" \
                    f"{self.agent.log()[-4000:]}"
        sample = _meta({"1.0.0": "v1", "2.0.0": "v2"}.get(version, "v1"))["sample"]
        y = self.agent.infer(MODEL, sample["inputs"])["outputs"]["y"]
        assert all(abs(a - b) <= sample["tolerance"] for a, b in zip(y, sample["outputs"]["y"])), (version, y)

    def still_serves_1(self):
        assert self.agent.serving()[0] == "1.0.0", self.agent.serving()
        self.serves("1.0.0")

    def trusted_version(self, role):
        return json.loads(self.repo.trusted(self.agent, role))["signed"]["version"]

    def model_files(self):
        return sorted(p.name for p in (self.agent.data_dir / "models").iterdir())

    def target_path(self, version):
        return next(p for p in self.repo.upstream_targets() if p.startswith(f"models/{MODEL}/{version}/"))


_n = [0]


@pytest.fixture
def hostile(srv, tmp_base):
    repo = HostileRepo(srv)
    repo.publish()
    proxy = HostileProxy(srv.port, repo)
    _n[0] += 1
    agent = Agent(tmp_base / f"h{_n[0]}", proxy.url)
    h = Hostile(srv, repo, proxy, agent)
    try:
        agent.enroll(srv.make_enroll_token()["token"])
        assert h.trusted_version("root") == 1
        agent.start()
        h.assign("1.0.0")
        h.serves("1.0.0")
        yield h
    finally:
        problems = agent.stop(check=False)
        print(f"\n--- agent log ({agent.logfile}) ---\n{agent.log()[-8000:]}")
        proxy.close()
        assert not problems, problems


# --- 1. a root whose other roles are unusable is not trusted -----------------------------------
def _no_timestamp(r):
    del r["roles"]["timestamp"]


def _unresolved(r):
    r["roles"]["targets"]["keyids"].append("ab" * 32)


ROOT_FLAWS = {
    "timestamp-threshold-0": (lambda r: r["roles"]["timestamp"].update(threshold=0),
                              "role 'timestamp' has threshold 0 over 1 key"),
    "snapshot-threshold-2-of-1": (lambda r: r["roles"]["snapshot"].update(threshold=2),
                                  "role 'snapshot' has threshold 2 over 1 key"),
    "targets-key-unresolved": (_unresolved, "role 'targets' lists key abababababababab"),
    "timestamp-role-missing": (_no_timestamp, "has no 'timestamp' role"),
}


@pytest.mark.parametrize("flaw", list(ROOT_FLAWS))
def test_root_with_unusable_roles_is_not_trusted(hostile, flaw):
    """Root 2, correctly signed by the root key, with one role that could never verify (or one
    that would verify with a key nobody defined): refused before it is stored; 1.0.0 serves on.
    The control: a sound root 2 in its place is taken and 2.0.0 installs."""
    h = hostile
    change, detail = ROOT_FLAWS[flaw]
    bad = h.repo.root_signed(2)
    change(bad)
    h.repo.add_root(bad)
    h.repo.publish()
    h.assign("2.0.0")
    line = h.failure("2.0.0")
    assert "root version 2" in line and detail in line, line
    assert h.trusted_version("root") == 1, "the flawed root was stored as trusted"
    h.still_serves_1()

    h.repo.add_root(h.repo.root_signed(2))
    h.serves("2.0.0")
    assert h.trusted_version("root") == 2


# --- 2. the root chain is capped per refresh --------------------------------------------------
def test_root_rotations_are_capped_per_refresh(hostile):
    """A repository that has a validly signed root N+1 for every N: one refresh follows at most
    256 rotations and then fails (it does not go on to trust the root it reached and install).
    The control: once the chain ends, the agent catches up and installs."""
    h = hostile
    h.repo.endless_roots = True
    h.repo.publish()
    h.assign("2.0.0")
    line = h.failure("2.0.0", timeout=60)
    assert f"more than {MAX_ROOT_ROTATIONS} root rotations" in line, line
    # The first refresh: the root requests from the first one up to the next other request.
    log = [p for _, p, _ in h.proxy.requests(r"^/v1/(tuf/image/|agent/checkin)")]
    first = next(i for i, p in enumerate(log) if p.endswith(".root.json"))
    run = 0
    while first + run < len(log) and log[first + run].endswith(".root.json"):
        run += 1
    assert run <= MAX_ROOT_ROTATIONS + 1, f"{run} roots fetched in one refresh"
    assert h.agent.serving()[0] == "1.0.0"
    h.still_serves_1()

    h.repo.endless_roots = False
    h.serves("2.0.0", timeout=60)
    assert h.trusted_version("root") == h.repo.root_version


# --- 3. floods of signatures are refused cheaply, and the memory comes back --------------------
def _flood(role, n, h):
    kid = keyid(h.repo.keys[role])

    def replace(env):
        env["signatures"] = junk_signatures(kid, n)
    return replace


@pytest.mark.parametrize("role,n,detail", [
    ("timestamp", 150_000, f"larger than {MAX_TIMESTAMP_BYTES} bytes"),
    ("snapshot", 5_000, f"5000 signatures, more than the {MAX_SIGNATURES}"),
])
def test_signature_flood_is_refused_cheaply(hostile, role, n, detail):
    """Metadata with thousands of signatures under the role's real key id that verify nothing:
    refused before they are verified, in little CPU time and without the agent's memory growing
    for good (the 150,000-signature timestamp is 32 MB: refused by size before it is parsed; the
    5,000-signature snapshot fits the size its timestamp lists, and is refused by count). The
    control: ordinary metadata afterwards installs."""
    h = hostile
    time.sleep(1)  # let the start-up settle
    cpu0, rss0, hwm0 = proc_usage(h.agent.proc.pid)
    h.repo.publish(envelope={role: _flood(role, n, h)})
    h.assign("2.0.0")
    line = h.failure("2.0.0", timeout=90)
    time.sleep(1)
    cpu1, rss1, hwm1 = proc_usage(h.agent.proc.pid)
    print(f"flood of {n} {role} signatures: cpu {cpu1 - cpu0:.2f} s, rss {rss0 >> 20} -> {rss1 >> 20} MB, "
          f"peak {hwm0 >> 20} -> {hwm1 >> 20} MB")
    assert detail in line, line
    assert cpu1 - cpu0 < 3, f"refusing took {cpu1 - cpu0:.1f} s of CPU"
    if not sanitized(h.agent.proc.pid):
        assert rss1 - rss0 < 16 << 20, f"RSS grew from {rss0 >> 20} to {rss1 >> 20} MB and stayed"
        assert hwm1 - hwm0 < 32 << 20, f"peak RSS grew from {hwm0 >> 20} to {hwm1 >> 20} MB"
    h.still_serves_1()

    h.repo.publish()
    h.serves("2.0.0")


def test_memory_comes_back_after_large_metadata(hostile):
    """Image targets of 25 MB (120,000 entries besides the real ones: within the cap, validly
    signed) are parsed, checked and installed from; afterwards the agent's resident memory is
    back near where it was (glibc keeps freed heap memory unless the agent gives it back)."""
    h = hostile
    time.sleep(1)
    cpu0, rss0, hwm0 = proc_usage(h.agent.proc.pid)

    def pad(t):
        for i in range(120_000):
            t["targets"][f"models/pad/{i}/model.onnx"] = {
                "length": i, "hashes": {"sha256": hashlib.sha256(str(i).encode()).hexdigest()},
                "custom": {"model": "pad", "version": f"{i}.0.0"}}
    h.repo.publish(edit={"targets": pad})
    h.assign("2.0.0")
    h.serves("2.0.0", timeout=60)
    # The agent parses the same large metadata again at each check-in; on a busy machine a parse
    # can be under way at any given moment. What must hold is that memory comes back between
    # parses: the lowest RSS over a few seconds.
    cpu1, rss1, hwm1 = proc_usage(h.agent.proc.pid)
    deadline = time.monotonic() + 10
    while rss1 - rss0 >= 24 << 20 and time.monotonic() < deadline:
        time.sleep(0.2)
        cpu1, rss_now, hwm1 = proc_usage(h.agent.proc.pid)
        rss1 = min(rss1, rss_now)
    print(f"large targets: cpu {cpu1 - cpu0:.2f} s, rss {rss0 >> 20} -> {rss1 >> 20} MB (lowest), "
          f"peak {hwm0 >> 20} -> {hwm1 >> 20} MB")
    assert hwm1 - hwm0 > 40 << 20, "the metadata was not even parsed: the test tests nothing"
    # Under AddressSanitizer its allocator (with its quarantine) replaces glibc's: nothing to see.
    if not sanitized(h.agent.proc.pid):
        assert rss1 - rss0 < 24 << 20, f"RSS grew from {rss0 >> 20} to {rss1 >> 20} MB and stayed"


# --- 4. every listed hash must match ----------------------------------------------------------
def _hashes(case, srv):
    sha512 = hashlib.sha512(_onnx("v2")).hexdigest()

    def edit(t):
        entry = next(e for p, e in t["targets"].items() if p.startswith(f"models/{MODEL}/2.0.0/"))
        if case == "wrong-sha512":
            entry["hashes"]["sha512"] = "0" * 128
        elif case == "right-sha512":
            entry["hashes"]["sha512"] = sha512
        else:
            entry["hashes"] = {"md5": hashlib.md5(_onnx("v2")).hexdigest()}
    return edit


@pytest.mark.parametrize("case,detail", [
    ("wrong-sha512", "SHA-512"),
    ("no-supported-hash", "lists no hash this client supports"),
    ("right-sha512", None),
])
def test_every_listed_hash_must_match(srv, hostile, case, detail):
    """The image targets list 2.0.0 with its right SHA-256 and a wrong SHA-512 (refused, the file
    not kept), with no hash the agent supports (refused), or with both right (installed)."""
    h = hostile
    h.repo.publish(edit={"targets": _hashes(case, srv)})
    h.assign("2.0.0")
    if detail is None:
        h.serves("2.0.0")
        return
    line = h.failure("2.0.0")
    assert detail in line, line
    h.still_serves_1()
    assert srv.sha["2.0.0"] not in h.model_files()


# --- 5. snapshot and timestamp are stored only once the whole update checked out ----------------
def _inconsistent(case):
    def ts(s):
        meta = s["meta"]["snapshot.json"]
        if case == "snapshot-length":
            meta["length"] += 1
        elif case == "snapshot-hash":
            meta["hashes"]["sha256"] = "0" * 64

    def sn(s):
        if case == "targets-length":
            s["meta"]["targets.json"]["length"] += 1
    return {"timestamp": ts, "snapshot": sn}


@pytest.mark.parametrize("case,detail", [
    ("snapshot-length", "the timestamp lists"),
    ("snapshot-hash", "snapshot SHA-256 differs"),
    ("targets-length", "the snapshot lists"),
])
def test_metadata_is_stored_only_after_every_check(hostile, case, detail):
    """A new timestamp, snapshot and targets, each validly signed, that do not agree with each
    other: none of them becomes the trusted copy (a later check would otherwise compare against
    metadata that failed). The control: a consistent set afterwards is stored and installs."""
    h = hostile
    before = {r: h.repo.trusted(h.agent, r) for r in ("timestamp", "snapshot", "targets")}
    assert all(before.values())
    h.repo.publish(edit=_inconsistent(case))
    h.assign("2.0.0")
    line = h.failure("2.0.0")
    assert detail in line, line
    time.sleep(1.5)  # another refresh or two
    after = {r: h.repo.trusted(h.agent, r) for r in before}
    assert after == before, [r for r in before if after[r] != before[r]]
    h.still_serves_1()

    h.repo.publish()
    h.serves("2.0.0")
    assert h.trusted_version("timestamp") == h.repo.version


# --- 6. what was verified is what is loaded ---------------------------------------------------
def test_the_verified_bytes_are_the_loaded_bytes(srv, hostile):
    """While the agent fetches 2.0.0's sample (after it verified the downloaded file, before it
    loads it), the file in models/ is replaced by other bytes, v1's model (someone with write
    access to the data directory). The agent loads the bytes it verified: 2.0.0 serves v2's
    answers."""
    h = hostile
    sha = srv.sha["2.0.0"]
    done = []

    def swap(path):
        f = h.agent.data_dir / "models" / sha
        if done or not f.exists():
            return
        tmp = f.with_name("swap.tmp")
        tmp.write_bytes(_onnx("v1"))
        os.replace(tmp, f)
        done.append(path)

    h.proxy.hooks.append((f"/v1/models/{MODEL}/versions/2.0.0/sample", swap))
    h.assign("2.0.0")
    h.serves("2.0.0")
    assert done, "the file was never swapped: the test did not test anything"
    assert "self-test failed" not in h.agent.log()


# --- 7. a model that fails to load does not stay on disk --------------------------------------
def test_a_model_that_fails_to_load_is_removed(srv, hostile):
    h = hostile
    junk = b"this is not an ONNX model\n" * 64
    sha = push(srv, "3.0.0", junk, "v1")
    h.repo.publish()
    h.assign("3.0.0")
    line = h.failure("3.0.0")
    assert "could not load" in line, line
    h.still_serves_1()
    assert sha not in h.model_files(), "the file that failed to load stayed in models/"
    assert h.model_files() == [srv.sha["1.0.0"]]
