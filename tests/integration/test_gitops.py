"""GitOps: the fleet's desired state in a real git repository (made with the git command),
fetched by the real gangliond over a path and over git:// (git daemon on loopback); commits
applied whole or refused whole with file and line, signatures checked, the webhook, drift."""

import hashlib
import hmac
import json
import os
import shutil
import subprocess
import threading
import time
from pathlib import Path

import pytest

from ganglion_harness import (GANGLION_CLI, NO_TOKEN, PG_BINDIR, assert_problem, enroll_device, free_port, list_all,
                              model_meta, publish, wait_for)

SRCDIR = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="needs the git command")

ALIAS = """apiVersion: ganglion/v1
kind: ModelAlias
model: det
alias: production
version: {version}
"""
CAMS = """# cameras of the north site
apiVersion: ganglion/v1
kind: Deployment
name: cams
model: det
selector: {selector}
follow: production
strategy:
  stages:
    - percent: 50
      bake: 0
    - {{percent: 100}}
"""
LAB = {"apiVersion": "ganglion/v1", "kind": "Deployment", "name": "lab", "model": "det", "selector": "site=lab",
       "follow": "1.0.0"}


class Repo:
    """A git repository made with the git command; the sync reads its `main` branch."""

    def __init__(self, path):
        self.path = Path(path)
        self.path.mkdir(parents=True)
        self.git("init", "-q", "-b", "main")
        self.git("config", "user.name", "Ops")
        self.git("config", "user.email", "ops@example.org")
        self.git("config", "commit.gpgsign", "false")

    def git(self, *args, check=True):
        p = subprocess.run(["git", "-C", str(self.path), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True, timeout=60, stdin=subprocess.DEVNULL,
                           env={**os.environ, "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1"})
        assert not check or p.returncode == 0, f"git {args}: {p.stderr}"
        return p.stdout.strip()

    def write(self, rel, text):
        f = self.path / rel
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(text if isinstance(text, str) else json.dumps(text, indent=2) + "\n")

    def commit(self, msg, key=None):
        """Commits everything; signed with the SSH key file `key` when given. Returns the id."""
        self.git("add", "-A")
        sign = ["-c", "gpg.format=ssh", "-c", f"user.signingkey={key}", "commit", "-S"] if key else ["commit"]
        self.git(*sign, "-q", "--allow-empty", "-m", msg)
        return self.git("rev-parse", "HEAD")


def ssh_key(path, comment):
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)], check=True,
                   timeout=30, stdin=subprocess.DEVNULL)
    return path


def gitops_server(gangliond, repo_url, *extra):
    """A gangliond syncing repo_url's main branch, path fleet/, only when asked (a long poll interval)."""
    s = gangliond(extra_args=["--gitops-repository", str(repo_url), "--gitops-path", "fleet",
                              "--gitops-interval", "1h", "--rollout-interval", "1s", *extra])
    # The first sync runs at start-up (and is refused: no model is published yet); let it end.
    assert wait_for(lambda: s.api("GET", "/v1/gitops").json()["status"] == "refused", 30)
    for v in ("1.0.0", "1.1.0"):
        r = publish(s, "det", f"bytes-det-{v}".encode(), meta=model_meta(v))
        assert r.status_code == 201, r.text
    return s


def sync(server, expect="synced", contract=None, **body):
    def attempt():  # a sync the server runs by itself (start-up, webhook) may still hold the lock
        r = server.api("POST", "/v1/gitops/sync", json=body)
        return None if r.status_code == 409 and "is running" in r.text else r

    r = wait_for(attempt, 60, 0.1)
    assert r is not None and r.status_code == 200, r.text if r is not None else "a sync kept running"
    if contract:
        contract.check_response("POST", "/v1/gitops/sync", r, 200)
    st = r.json()
    assert st["status"] == expect, json.dumps(st, indent=1)
    return st


def deployment(server, name):
    r = server.api("GET", f"/v1/deployments/{name}")
    return r.json() if r.status_code == 200 else None


def alias_version(server):
    return server.api("GET", "/v1/models/det").json()["aliases"].get("production")


def test_apply_change_delete_revert(gangliond, workdir):
    repo = Repo(workdir / "fleet-repo")
    repo.write("fleet/production.yaml", ALIAS.format(version="1.0.0"))
    repo.write("fleet/cams.yaml", CAMS.format(selector="site=north"))
    repo.write("fleet/lab.json", LAB)
    repo.write("fleet/README.md", "not a document")
    repo.write("other/ignored.yaml", "not: [read")  # outside gitops-path
    c1 = repo.commit("north cameras follow production")
    s = gitops_server(gangliond, repo.path)

    st = sync(s)
    assert st["applied"]["commit"] == c1 and st["errors"] == [] and st["plan"] == []
    assert {(o["kind"], o["name"], o["file"], o["commit"]) for o in st["objects"]} == {
        ("ModelAlias", "det/production", "fleet/production.yaml", c1),
        ("Deployment", "cams", "fleet/cams.yaml", c1), ("Deployment", "lab", "fleet/lab.json", c1)}
    cams = deployment(s, "cams")
    assert (cams["selector"], cams["follow"], cams["version"]) == ("site=north", "production", "1.0.0")
    assert [x["percent"] for x in cams["strategy"]["stages"]] == [50, 100]
    assert deployment(s, "lab")["version"] == "1.0.0" and alias_version(s) == "1.0.0"
    audit, _ = list_all(s, "/v1/audit")
    mine = {(a["actor"], a["action"], a["object_id"]) for a in audit if a["request_id"] == c1}
    assert mine == {("gitops", "model.alias", "det"), ("gitops", "deployment.create", "cams"),
                    ("gitops", "deployment.create", "lab"), ("gitops", "gitops.apply", c1)}, mine

    # Read-only through the API and the CLI: 409 naming the file and the commit.
    r = s.api("PATCH", "/v1/deployments/cams", json={"selector": "site=south"})
    assert_problem(r, 409, f"fleet/cams.yaml, line 2, commit {c1[:12]}")
    assert_problem(s.api("DELETE", "/v1/deployments/lab"), 409, "managed by GitOps")
    assert_problem(s.api("PUT", "/v1/models/det/aliases/production", json={"version": "1.1.0"}), 409, "GitOps")
    p = s.cli("deploy", "delete", "cams")
    assert p.returncode == 5 and "fleet/cams.yaml" in p.stderr, p.stderr
    assert deployment(s, "cams")["selector"] == "site=north"
    # Objects git does not declare are left alone, and stay changeable.
    r = s.api("POST", "/v1/deployments", json={"name": "mine", "model": "det", "selector": "site=mine",
                                               "follow": "1.0.0"})
    assert r.status_code == 201, r.text

    # A change and a deletion.
    repo.write("fleet/cams.yaml", CAMS.format(selector="site=north,kind=cam"))
    (repo.path / "fleet/lab.json").unlink()
    c2 = repo.commit("narrow cams, drop lab")
    plan = s.cli("gitops", "plan", output="json")
    assert plan.returncode == 0, plan.stderr
    changes = {(c["action"], c["name"]) for c in json.loads(plan.stdout)["changes"]}
    assert changes == {("change", "cams"), ("delete", "lab")}, changes
    assert deployment(s, "lab") is not None  # a plan applies nothing
    p = s.cli("gitops", "sync")
    assert p.returncode == 0, p.stdout + p.stderr
    assert deployment(s, "cams")["selector"] == "site=north,kind=cam" and deployment(s, "lab") is None
    assert deployment(s, "mine") is not None
    st = s.api("GET", "/v1/gitops").json()
    assert st["applied"]["commit"] == c2 and {o["name"] for o in st["objects"]} == {"cams", "det/production"}
    assert all(o["commit"] == c2 for o in st["objects"])
    audit, _ = list_all(s, "/v1/audit")
    assert {(a["action"], a["object_id"]) for a in audit if a["request_id"] == c2} == {
        ("deployment.update", "cams"), ("deployment.delete", "lab"), ("gitops.apply", c2)}

    # git revert brings the previous state back.
    repo.git("revert", "--no-edit", "HEAD")
    c3 = repo.git("rev-parse", "HEAD")
    sync(s)
    assert deployment(s, "cams")["selector"] == "site=north" and deployment(s, "lab")["version"] == "1.0.0"
    assert s.api("GET", "/v1/gitops").json()["applied"]["commit"] == c3


def test_a_bad_commit_is_refused_whole(gangliond, workdir, contract):
    repo = Repo(workdir / "fleet-repo")
    repo.write("fleet/production.yaml", ALIAS.format(version="1.0.0"))
    repo.write("fleet/cams.yaml", CAMS.format(selector="site=north"))
    good = repo.commit("good")
    s = gitops_server(gangliond, repo.path)
    sync(s)

    # One valid change among bad files: nothing is applied, every error names its file and line.
    r = s.api("PUT", "/v1/models/det/versions/1.1.0/yank", json={"reason": "bad accuracy"})
    assert r.status_code == 200, r.text
    repo.write("fleet/production.yaml", ALIAS.format(version="1.1.0"))
    repo.write("fleet/cams.yaml", CAMS.format(selector="site=south"))
    repo.write("fleet/typo.yaml", "apiVersion: ganglion/v1\nkind: ModelAlias\nmodel: det\nalias: beta\n"
                                  "version: 1.0.0\ncolour: red\n")
    repo.write("fleet/broken.yaml", "apiVersion: ganglion/v1\nkind: Deployment\n  name: x\n")
    repo.write("fleet/gadget.yml", "apiVersion: ganglion/v1\nkind: Gadget\n")
    repo.write("fleet/wrongtype.json", {**LAB, "name": "wt", "follow": 1.5})
    repo.write("fleet/missing.yaml", "apiVersion: ganglion/v1\nkind: Deployment\nname: gone\nmodel: det\n"
                                     "selector: site=gone\nfollow: 9.9.9\n")
    repo.write("fleet/badgate.yaml", "apiVersion: ganglion/v1\nkind: Deployment\nname: bg\nmodel: det\n"
                                     "selector: site=bg\nfollow: 1.0.0\nstrategy:\n  stages:\n"
                                     "    - percent: 50\n    - percent: 40\n")
    bad = repo.commit("several mistakes")
    st = sync(s, expect="refused", contract=contract)
    errs = {(e["file"], e["line"]) for e in st["errors"]}
    assert errs == {("fleet/typo.yaml", 6), ("fleet/broken.yaml", 3), ("fleet/gadget.yml", 2),
                    ("fleet/wrongtype.json", 7), ("fleet/missing.yaml", 6), ("fleet/badgate.yaml", 10),
                    ("fleet/production.yaml", 5)}, st["errors"]
    msgs = " | ".join(e["message"] for e in st["errors"])
    for phrase in ("unknown field 'colour'", "YAML syntax error", "unknown kind 'Gadget'", "must be text, not a number",
                   "has no version or alias '9.9.9'", "strategy.stages[1].percent", "1.1.0 is yanked (bad accuracy)"):
        assert phrase in msgs, msgs
    assert st["applied"]["commit"] == good and st["head"]["commit"] == bad
    assert deployment(s, "cams")["selector"] == "site=north" and deployment(s, "gone") is None
    p = s.cli("gitops", "sync")
    assert p.returncode == 7 and "refused" in p.stderr, p.stderr
    p = s.cli("gitops", "status")
    assert "fleet/typo.yaml:6: unknown field 'colour'" in p.stdout, p.stdout
    # The same checks offline, on a checkout, without the server's (version 9.9.9, the strategy).
    p = s.cli("gitops", "validate", repo.path / "fleet")
    assert p.returncode == 7 and "fleet/typo.yaml:6:" not in p.stderr and "typo.yaml:6:" in p.stderr, p.stderr
    assert "gadget.yml:2:" in p.stderr and "9.9.9" not in p.stderr

    # Valid files whose deployments overlap: refused by the deployments module, named by file.
    for f in ("typo.yaml", "broken.yaml", "gadget.yml", "wrongtype.json", "missing.yaml", "badgate.yaml"):
        (repo.path / "fleet" / f).unlink()
    repo.write("fleet/production.yaml", ALIAS.format(version="1.0.0"))
    repo.write("fleet/south.yaml", CAMS.format(selector="site=south").replace("name: cams", "name: south"))
    repo.commit("two deployments for the south")
    enroll_device(s, labels={"site": "south"})
    contract.check_response("POST", "/v1/gitops/plan", s.api("POST", "/v1/gitops/plan"), 200)
    st = sync(s, expect="refused", contract=contract)
    assert len(st["errors"]) == 1 and st["errors"][0]["file"] in ("fleet/cams.yaml", "fleet/south.yaml")
    assert "already covers" in st["errors"][0]["message"] and st["errors"][0]["line"] == 6, st["errors"]
    assert {(c["action"], c["name"]) for c in st["plan"]} == {("change", "cams"), ("create", "south")}
    assert deployment(s, "south") is None and deployment(s, "cams")["selector"] == "site=north"

    (repo.path / "fleet/south.yaml").unlink()
    fixed = repo.commit("one deployment for the south")
    assert sync(s)["applied"]["commit"] == fixed and deployment(s, "cams")["selector"] == "site=south"

    # A force push that drops the applied commit is refused (it could bring back an old state);
    # an operator may allow it.
    repo.git("reset", "-q", "--hard", good)
    repo.write("fleet/cams.yaml", CAMS.format(selector="site=east"))
    forced = repo.commit("rewritten")
    st = sync(s, expect="refused")
    assert "does not descend from the applied commit" in st["errors"][0]["message"], st["errors"]
    st = sync(s, allow_rewrite=True)
    assert st["applied"]["commit"] == forced and deployment(s, "cams")["selector"] == "site=east"


def test_signed_commits(gangliond, workdir):
    alice, mallory = ssh_key(workdir / "alice", "alice"), ssh_key(workdir / "mallory", "mallory")
    signers = workdir / "allowed_signers"
    signers.write_text("# who may change the fleet\nalice@example.org "
                       + " ".join((workdir / "alice.pub").read_text().split()[:2]) + "\n")
    repo = Repo(workdir / "fleet-repo")
    repo.write("fleet/production.yaml", ALIAS.format(version="1.0.0"))
    unsigned = repo.commit("unsigned")
    s = gitops_server(gangliond, f"file://{repo.path}", "--gitops-allowed-signers", signers)
    st = sync(s, expect="refused")
    assert st["head"]["commit"] == unsigned and "is not signed" in st["errors"][0]["message"]
    assert alias_version(s) is None

    repo.commit("signed by someone else", key=mallory)
    st = sync(s, expect="refused")
    assert "does not list" in st["errors"][0]["message"], st["errors"]

    good = repo.commit("signed by alice", key=alice)
    st = sync(s)
    fingerprint = subprocess.run(["ssh-keygen", "-lf", f"{alice}.pub"], stdout=subprocess.PIPE, text=True,
                                 check=True).stdout.split()[1]
    assert st["applied"] == {**st["applied"], "commit": good, "signer": f"alice@example.org ({fingerprint})"}
    assert alias_version(s) == "1.0.0"
    audit, _ = list_all(s, "/v1/audit")
    apply = [a for a in audit if a["action"] == "gitops.apply"]
    assert len(apply) == 1 and apply[0]["detail"]["signer"].startswith("alice@example.org")


def test_webhook_over_git_daemon(gangliond, workdir, contract):
    repo = Repo(workdir / "repos" / "fleet.git")
    repo.write("fleet/production.yaml", ALIAS.format(version="1.0.0"))
    c1 = repo.commit("first")
    port = free_port()
    daemon = subprocess.Popen(["git", "daemon", "--export-all", "--reuseaddr", "--listen=127.0.0.1",
                               f"--port={port}", f"--base-path={workdir / 'repos'}", str(workdir / "repos")],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    secret = "s3cret-for-the-hook-only"
    (workdir / "hook.secret").write_text(secret + "\n")
    try:
        url = f"git://127.0.0.1:{port}/fleet.git"
        assert wait_for(lambda: subprocess.run(["git", "ls-remote", url], capture_output=True).returncode == 0, 30)
        s = gitops_server(gangliond, url, "--gitops-webhook-secret-file", workdir / "hook.secret")
        assert sync(s)["applied"]["commit"] == c1  # the models exist now; the poll is an hour away
        repo.write("fleet/production.yaml", ALIAS.format(version="1.1.0"))
        c2 = repo.commit("move production")
        body = json.dumps({"ref": "refs/heads/main", "after": c2}).encode()
        sig = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
        bad = "sha256=" + hmac.new(b"not the secret", body, hashlib.sha256).hexdigest()
        for headers in ({}, {"X-Hub-Signature-256": bad}, {"X-Hub-Signature-256": sig[:-2]},
                        {"X-Gitlab-Token": "guess"}):
            assert_problem(s.api("POST", "/v1/gitops/hook", token=NO_TOKEN, data=body, headers=headers), 401)
        r = s.api("POST", "/v1/gitops/hook", token=NO_TOKEN, data=body, headers={"X-Hub-Signature-256": sig})
        contract.check_response("POST", "/v1/gitops/hook", r, 202)
        assert wait_for(lambda: s.api("GET", "/v1/gitops").json()["applied"]["commit"] == c2, 30)
        assert alias_version(s) == "1.1.0"
        audit, _ = list_all(s, "/v1/audit")
        by = {a["object_id"]: a["detail"]["by"] for a in audit if a["action"] == "gitops.apply"}
        assert by[c2] == "webhook" and by[c1].startswith("token:"), by
        # Gitea's header (the same HMAC, bare hex) wakes it too; the content comes from git.
        repo.write("fleet/production.yaml", ALIAS.format(version="1.0.0"))
        c3 = repo.commit("production back")
        r = s.api("POST", "/v1/gitops/hook", token=NO_TOKEN, data=b"{}",
                  headers={"X-Gitea-Signature": hmac.new(secret.encode(), b"{}", hashlib.sha256).hexdigest()})
        assert r.status_code == 202, r.text
        assert wait_for(lambda: s.api("GET", "/v1/gitops").json()["applied"]["commit"] == c3, 30)
    finally:
        daemon.terminate()
        daemon.wait(10)
    # The remote gone: the sync fails, says why, and the applied state stays.
    repo.write("fleet/production.yaml", ALIAS.format(version="1.1.0"))
    repo.commit("unreachable")
    st = sync(s, expect="failed")
    assert "cannot fetch" in st["errors"][0]["message"] and st["applied"]["commit"] == c3
    assert alias_version(s) == "1.0.0"


def test_alias_moved_in_git_starts_a_rollout_and_drift(gangliond, workdir, contract):
    repo = Repo(workdir / "fleet-repo")
    repo.write("fleet/production.yaml", ALIAS.format(version="1.0.0"))
    repo.write("fleet/cams.yaml", CAMS.format(selector="site=north"))
    repo.commit("first")
    s = gitops_server(gangliond, repo.path)
    sync(s)
    repo.write("fleet/production.yaml", ALIAS.format(version="1.1.0"))
    moved = repo.commit("production is 1.1.0")
    sync(s)

    def rollout():
        items = s.api("GET", "/v1/rollouts", params={"deployment": "cams"}).json()["items"]
        return items[0] if items else None

    r = wait_for(rollout, 60)
    assert r and (r["from_version"], r["to_version"]) == ("1.0.0", "1.1.0"), r
    audit, _ = list_all(s, "/v1/audit")
    assert [a["detail"] for a in audit if a["request_id"] == moved and a["action"] == "model.alias"] == [
        {"alias": "production", "version": "1.1.0"}]

    assert wait_for(lambda: rollout()["state"] == "completed", 30), rollout()

    # Suspended, the API may change what git manages; the status shows the drift, and resuming
    # puts git's state back.
    p = s.cli("gitops", "suspend")
    assert p.returncode == 0, p.stderr
    assert_problem(s.api("POST", "/v1/gitops/sync", json={}), 409, "suspended")
    r = s.api("PATCH", "/v1/deployments/cams", json={"selector": "site=north,floor=1"})
    assert r.status_code == 200, r.text
    st = contract.check_response("GET", "/v1/gitops", s.api("GET", "/v1/gitops"), 200).json()
    assert st["suspended"]["by"].startswith("token:") and [(d["name"], d["drift"]) for d in st["drift"]] == [
        ("cams", "changed")]
    assert st["drift"][0]["changes"]["selector"] == {"from": "site=north,floor=1", "to": "site=north"}
    assert s.cli("gitops", "resume").returncode == 0
    assert wait_for(lambda: deployment(s, "cams")["selector"] == "site=north", 60)
    assert wait_for(lambda: s.api("GET", "/v1/gitops").json()["drift"] == [], 30)


class ObjectRowLock:
    """Holds the row of gitops_objects that records det/production FOR UPDATE, from a psql session of
    the test's own. An apply then makes every change of its commit and blocks where it records the
    objects it applied, inside its transaction: a deterministic 'mid-apply' with no test hook in
    gangliond. (A sync that finds nothing new writes gitops_state only, so it is not held up.)"""

    def __init__(self, pg, db):
        self.p = subprocess.Popen([str(PG_BINDIR / "psql"), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
                                   "-h", str(pg.sockdir), "-p", str(pg.port), "-U", pg.user, "-d", db],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.p.stdin.write("BEGIN;\nSELECT 'locked' FROM gitops_objects WHERE kind = 'ModelAlias' AND "
                           "key = 'det/production' FOR UPDATE;\n")
        self.p.stdin.flush()
        assert self.p.stdout.readline().strip() == "locked"

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.p.communicate("ROLLBACK;\n", timeout=30)


def lock_waits(pg, db):
    """(application_name, query) of each connection to db that waits for a lock."""
    out = pg.sql("SELECT application_name || '|' || translate(query, E'\\n', ' ') FROM pg_stat_activity "
                 "WHERE datname = current_database() AND wait_event_type = 'Lock'", db)
    return [tuple(line.split("|", 1)) for line in out.splitlines()]


def applies_waiting(pg, db):
    """application_name ('' if none) of each connection whose apply waits on the test's row lock."""
    return [app for app, query in lock_waits(pg, db) if query.startswith("INSERT INTO gitops_objects")]


def db_state(pg, db):
    """What the database holds of GitOps' work, read past gangliond: deployments, aliases, the
    managed objects with their commit, and the applied commit."""
    def rows(sql):
        return sorted(tuple(line.split("|")) for line in pg.sql(sql, db).splitlines())

    return {"deployments": rows("SELECT name, selector, follows FROM deployments"),
            "aliases": rows("SELECT model, alias, version FROM model_aliases"),
            "objects": rows("SELECT kind, key, commit FROM gitops_objects"),
            "applied": pg.sql("SELECT applied_commit FROM gitops_state", db)}


def expected_state(commit, alias, deployments):
    """db_state of a commit declaring the alias det/production=alias and deployments {name: (selector, follow)}."""
    return {"deployments": sorted((n, sel, fol) for n, (sel, fol) in deployments.items()),
            "aliases": [("det", "production", alias)],
            "objects": sorted([("ModelAlias", "det/production", commit)]
                              + [("Deployment", n, commit) for n in deployments]),
            "applied": commit}


def wait_no_backends(pg, db):
    """Waits until no connection of a killed gangliond is left (they end once they see it gone)."""
    assert wait_for(lambda: pg.sql("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                                   "AND pid <> pg_backend_pid() AND backend_type = 'client backend'", db) == "0",
                    30, 0.1), pg.sql("SELECT application_name, state, query FROM pg_stat_activity", db)


def kill9(server):
    server.proc.kill()
    server.proc.wait()
    server.proc = None


SITES = 40  # deployments a large commit adds


def large_commit(repo):
    """The alias moved, cams changed, lab deleted and SITES deployments added, in one commit."""
    repo.write("fleet/production.yaml", ALIAS.format(version="1.1.0"))
    repo.write("fleet/cams.yaml", CAMS.format(selector="site=north,kind=cam"))
    (repo.path / "fleet/lab.json").unlink()
    for i in range(SITES):
        repo.write(f"fleet/sites/s{i}.yaml", CAMS.format(selector=f"site=s{i}").replace("name: cams", f"name: s{i}"))
    return repo.commit(f"production is 1.1.0; {SITES} more sites")


def test_killed_mid_apply_keeps_one_commit_whole(gangliond, pg, db, workdir):
    """gangliond killed (-9) while it applies a large commit: the database holds the previous commit's
    state exactly, and the restarted server applies the new one whole."""
    repo = Repo(workdir / "fleet-repo")
    repo.write("fleet/production.yaml", ALIAS.format(version="1.0.0"))
    repo.write("fleet/cams.yaml", CAMS.format(selector="site=north"))
    repo.write("fleet/lab.json", LAB)
    c1 = repo.commit("first")
    s = gitops_server(gangliond, repo.path)
    sync(s)
    one = expected_state(c1, "1.0.0", {"cams": ("site=north", "production"), "lab": ("site=lab", "1.0.0")})
    assert db_state(pg, db) == one
    c2 = large_commit(repo)
    two = expected_state(c2, "1.1.0", {"cams": ("site=north,kind=cam", "production"),
                                       **{f"s{i}": (f"site=s{i}", "production") for i in range(SITES)}})

    def ask():  # answered never: the server dies under it
        try:
            s.api("POST", "/v1/gitops/sync", json={}, timeout=60)
        except Exception:  # noqa: BLE001 -- the connection is cut by the kill
            pass

    with ObjectRowLock(pg, db):
        asker = threading.Thread(target=ask)
        asker.start()
        assert wait_for(lambda: applies_waiting(pg, db), 60, 0.1), "the apply never got to recording its objects"
        kill9(s)
    asker.join(60)
    wait_no_backends(pg, db)
    assert db_state(pg, db) == one
    assert pg.sql(f"SELECT count(*) FROM audit_log WHERE request_id = '{c2}'", db) == "0"

    s.start()  # the same data dir (and git cache); the first sync runs at start-up
    assert wait_for(lambda: s.api("GET", "/v1/gitops").json()["applied"]["commit"] == c2, 60, 0.2), \
        s.api("GET", "/v1/gitops").json()
    st = s.api("GET", "/v1/gitops").json()
    assert st["status"] == "synced" and st["errors"] == [] and st["plan"] == [], st
    assert db_state(pg, db) == two
    audit, _ = list_all(s, "/v1/audit")
    assert sorted(a["action"] for a in audit if a["request_id"] == c2) == sorted(
        ["deployment.create"] * SITES + ["deployment.update", "deployment.delete", "model.alias", "rollout.start",
                                         "gitops.apply"])


def test_two_replicas_one_syncs_and_a_kill_hands_over(gangliond, pg, db, workdir):
    """Two gangliond on one database, both polling every second: one applies, the other waits its
    turn (a sync asked of either is refused while one runs); the one applying killed, the other
    applies the commit."""
    repo = Repo(workdir / "fleet-repo")
    repo.write("fleet/production.yaml", ALIAS.format(version="1.0.0"))
    repo.write("fleet/cams.yaml", CAMS.format(selector="site=north"))
    repo.write("fleet/lab.json", LAB)
    c1 = repo.commit("first")
    args = ["--gitops-repository", str(repo.path), "--gitops-path", "fleet", "--gitops-interval", "1s"]
    a = gangliond(database=f"{db} application_name=replica_a", extra_args=args)
    b = gangliond(database=f"{db} application_name=replica_b", extra_args=args, admin_token=a.admin_token)
    for v in ("1.0.0", "1.1.0"):
        assert publish(a, "det", f"bytes-det-{v}".encode(), meta=model_meta(v)).status_code == 201
    assert wait_for(lambda: b.api("GET", "/v1/gitops").json()["applied"]["commit"] == c1, 30, 0.2)
    with ObjectRowLock(pg, db):
        c2 = large_commit(repo)
        assert wait_for(lambda: applies_waiting(pg, db), 60, 0.1), "no replica began the apply"
        time.sleep(2.5)  # more polls of each replica: still one apply, and nothing else waits
        waits = lock_waits(pg, db)
        assert len(waits) == 1 and applies_waiting(pg, db) == [waits[0][0]], waits
        name = waits[0][0]
        syncing, other = (a, b) if name == "replica_a" else (b, a)
        for s in (other, syncing):
            assert_problem(s.api("POST", "/v1/gitops/sync", json={}), 409, "is running")
        assert other.api("GET", "/v1/gitops").json()["applied"]["commit"] == c1
        kill9(syncing)
    assert wait_for(lambda: other.api("GET", "/v1/gitops").json()["applied"]["commit"] == c2, 30, 0.2), \
        other.api("GET", "/v1/gitops").json()
    assert db_state(pg, db) == expected_state(c2, "1.1.0", {"cams": ("site=north,kind=cam", "production"), **{
        f"s{i}": (f"site=s{i}", "production") for i in range(SITES)}})
    applies = pg.sql("SELECT request_id FROM audit_log WHERE action = 'gitops.apply'", db).split()
    assert sorted(applies) == sorted([c1, c2]), applies
    # Logged just after the apply's commit, which the API may show first.
    assert wait_for(lambda: f"event=gitops_applied commit={c2}" in other.log(), 30, 0.1), other.log()


def test_refusals_of_the_api_and_settings(gangliond, workdir, tmp_path):
    s = gangliond()
    st = s.api("GET", "/v1/gitops").json()
    assert st["enabled"] is False and st["status"] == "never"
    assert_problem(s.api("POST", "/v1/gitops/sync", json={}), 409, "GitOps is off")
    assert_problem(s.api("POST", "/v1/gitops/hook", token=NO_TOKEN, data=b"{}"), 404, "no GitOps webhook")
    reader = s.make_token(["read"])["token"]
    assert s.api("GET", "/v1/gitops", token=reader).status_code == 200
    assert_problem(s.api("POST", "/v1/gitops/sync", token=reader, json={}), 403)
    assert_problem(s.api("POST", "/v1/gitops/plan", token=NO_TOKEN, json={}), 401)
    assert_problem(s.api("POST", "/v1/gitops/sync", json={"force": "yes"}), 400)
    assert_problem(s.api("POST", "/v1/gitops/plan", json={"ref": "x", "extra": 1}), 400)
    s.stop()
    # Settings that cannot work stop the start, naming the setting.
    short = tmp_path / "short.secret"
    short.write_text("tooshort\n")
    bad_signers = tmp_path / "signers"
    bad_signers.write_text("a ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAAAgQC7\n")
    gangliond_bin = s.command()[0]
    for args, phrase in (
            (["--gitops-allowed-signers", "/x"], "gitops-allowed-signers is set but gitops-repository is not"),
            (["--gitops-repository", "relative/path"], "must be an absolute path"),
            (["--gitops-repository", "/r", "--gitops-token-file", "/t"], "only for an https://"),
            (["--gitops-repository", "ssh://git@h/r", "--gitops-ssh-key", "/k"], "gitops-ssh-known-hosts"),
            (["--gitops-repository", "/r", "--gitops-path", "../up"], "gitops-path"),
            (["--gitops-repository", "/r", "--gitops-branch", "a..b"], "gitops-branch"),
            (["--gitops-repository", "/r", "--gitops-webhook-secret-file", short], "16 bytes"),
            (["--gitops-repository", "/r", "--gitops-allowed-signers", bad_signers], "only ssh-ed25519")):
        p = subprocess.run([gangliond_bin, "--data-dir", str(tmp_path / "d"), "--database-url",
                            "postgresql:///none?host=/nonexistent", *map(str, args), "serve"],
                           capture_output=True, text=True, timeout=30)
        assert p.returncode != 0 and phrase in p.stderr, (args, p.stderr)


def test_examples_match_the_json_schemas(tmp_path):
    """api/gitops/*.schema.json and gangliond's parser (through `ganglion gitops validate`) agree
    on the examples and on bad documents, checked with a real JSON Schema validator; and the
    schema's strategy is the REST contract's, so none of the three drifts."""
    jsonschema = pytest.importorskip("jsonschema")
    yaml = pytest.importorskip("yaml")
    schemas = {p.name.split(".")[0]: json.loads(p.read_text()) for p in (SRCDIR / "api/gitops").glob("*.schema.json")}
    assert set(schemas) == {"deployment", "modelalias"}
    examples = sorted((SRCDIR / "api/gitops/examples").glob("*"))
    assert len(examples) >= 3
    docs = [(p.name, yaml.safe_load(p.read_text())) for p in examples]
    docs += [("ALIAS", yaml.safe_load(ALIAS.format(version="1.0.0"))),
             ("CAMS", yaml.safe_load(CAMS.format(selector="site=north"))), ("LAB", LAB)]
    for name, doc in docs:
        jsonschema.Draft202012Validator(schemas[doc["kind"].lower()]).validate(doc)
    bad = [{**LAB, "colour": 1}, {**LAB, "follow": 1.5}, {**LAB, "name": "Bad"}, {k: v for k, v in LAB.items()
                                                                                    if k != "selector"},
           {**LAB, "strategy": {"stages": [{"percent": 10, "bake": -1}]}}, {**LAB, "apiVersion": "v2"}]
    for doc in bad:
        assert list(jsonschema.Draft202012Validator(schemas["deployment"]).iter_errors(doc)), doc

    def validate(directory):
        return subprocess.run([str(GANGLION_CLI), "gitops", "validate", str(directory)], capture_output=True,
                              text=True, timeout=30)

    p = validate(SRCDIR / "api/gitops/examples")
    assert p.returncode == 0 and f"{len(examples)} object(s): valid" in p.stdout, p.stdout + p.stderr
    for i, doc in enumerate(bad[:-2]):  # the last two need the server (its strategy rules, the apiVersion aside)
        d = tmp_path / str(i)
        d.mkdir()
        (d / "doc.json").write_text(json.dumps(doc))
        assert validate(d).returncode == 7, doc
    (tmp_path / "v2").mkdir()
    (tmp_path / "v2" / "doc.json").write_text(json.dumps(bad[-1]))
    assert validate(tmp_path / "v2").returncode == 7
    contract = yaml.safe_load((SRCDIR / "api/openapi.yaml").read_text())["components"]["schemas"]["Strategy"]
    mine = schemas["deployment"]["properties"]["strategy"]

    def props(schema, path=""):
        out = {}
        for k, v in (schema.get("properties") or {}).items():
            out[path + k] = (v.get("type"), v.get("minimum"), v.get("maximum"), tuple(v.get("enum") or ()))
            out.update(props(v, path + k + "."))
            if "items" in v:
                out.update(props(v["items"], path + k + "[]."))
        return out

    theirs, ours = props(contract), props(mine)
    for k in ours:  # types may be widened with null in ours, as JSON Schema spells nullable
        if isinstance(ours[k][0], list):
            ours[k] = (next(t for t in ours[k][0] if t != "null"),) + ours[k][1:]
    assert ours == theirs, {k: (ours.get(k), theirs.get(k)) for k in set(ours) | set(theirs)
                            if ours.get(k) != theirs.get(k)}
