"""TUF delegations. `ganglion-agent tuf-client` (the agent's own checks) against static repositories
whose delegated targets roles python-securesystemslib signs: a threshold of 2 of 3 CI keys, a
terminating delegation that hides a later role, per-model delegations, and a delegated role the
snapshot does not vouch for."""

import hashlib

import pytest
import securesystemslib.keys as sslkeys

from test_tuf_client import TARGET, Repo, Server, client, expires, key_object, keyid, ok, refused, sign


class DelegatingRepo(Repo):
    """A Repo whose top-level targets delegate to roles (in order); publish() signs each delegated
    role at the new version too and lists it in the snapshot."""

    def __init__(self, dir):
        super().__init__(dir)
        self.roles = []  # [{"name", "keys", "threshold", "paths", "terminating", "targets", "signers"}]

    def delegate(self, name, keys, threshold, paths, terminating=False, signers=None):
        self.roles.append({"name": name, "keys": keys, "threshold": threshold, "paths": paths,
                           "terminating": terminating, "targets": {}, "signers": signers or keys})
        return self.roles[-1]

    def publish(self, ts_expires=7, ts_key=None):
        self.version += 1
        v = self.version
        common = {"spec_version": "1.0.0", "version": v, "expires": expires(30)}
        meta = {}
        for r in self.roles:
            data = self.write(f"{v}.{r['name']}.json",
                              sign({"_type": "targets", **common, "targets": r["targets"]}, *r["signers"]))
            meta[f"{r['name']}.json"] = {"version": v, "length": len(data)}
        delegations = {"keys": {keyid(k): key_object(k) for r in self.roles for k in r["keys"]},
                       "roles": [{"name": r["name"], "keyids": [keyid(k) for k in r["keys"]],
                                  "threshold": r["threshold"], "paths": r["paths"],
                                  "terminating": r["terminating"]} for r in self.roles]}
        tg = self.write(f"{v}.targets.json", sign({"_type": "targets", **common, "targets": self.targets,
                                                   "delegations": delegations}, self.keys["targets"]))
        meta["targets.json"] = {"version": v, "length": len(tg), "hashes": {"sha256": hashlib.sha256(tg).hexdigest()}}
        sn = self.write(f"{v}.snapshot.json", sign({"_type": "snapshot", **common, "meta": meta}, self.keys["snapshot"]))
        ts = {"_type": "timestamp", **common, "expires": expires(ts_expires),
              "meta": {"snapshot.json": {"version": v, "length": len(sn),
                                         "hashes": {"sha256": hashlib.sha256(sn).hexdigest()}}}}
        return self.write("timestamp.json", sign(ts, ts_key or self.keys["timestamp"]))

    def release(self, role, path, content):
        """Puts the target file in place and lists it in role's targets (not in the top-level's)."""
        self.add_target(path, content)
        role["targets"][path] = self.targets.pop(path)


@pytest.fixture
def drepo(tmp_path):
    repo = DelegatingRepo(tmp_path / "repo")
    srv = Server(tmp_path / "repo")
    (tmp_path / "dl").mkdir()
    yield repo, srv, tmp_path
    srv.close()


def start(repo, srv, tmp):
    repo.publish()
    ok(client(srv, tmp, "init", str(repo.dir / "metadata" / "1.root.json")))


def test_threshold_two_of_three_ci_keys(drepo):
    repo, srv, tmp = drepo
    ci = [sslkeys.generate_ed25519_key() for _ in range(3)]
    role = repo.delegate("ci", ci, 2, ["models/*/*/*"], signers=ci[:2])
    repo.release(role, TARGET, b"released by CI")
    start(repo, srv, tmp)
    ok(client(srv, tmp, "download", TARGET))
    assert (tmp / "dl" / "models%2Fdet%2F1.0.0%2Fmodel.onnx").read_bytes() == b"released by CI"
    assert "/metadata/1.ci.json" in srv.requests
    assert (tmp / "meta" / "ci.json").is_file()

    # Version 2, signed by one CI key only: refused, and the trusted ci.json stays version 1.
    other = "models/det/2.0.0/model.onnx"
    role["signers"] = ci[2:]
    repo.release(role, other, b"one key only")
    repo.publish()
    refused(client(srv, tmp, "download", other), "threshold is 2")
    assert '"version":1' in (tmp / "meta" / "ci.json").read_text().replace(" ", "")
    # Signed by one CI key and the top-level targets key: still one CI key.
    role["signers"] = [ci[0], repo.keys["targets"]]
    repo.publish()
    refused(client(srv, tmp, "download", other), "threshold is 2")
    role["signers"] = [ci[0], ci[2]]
    repo.publish()
    ok(client(srv, tmp, "download", other))


def test_terminating_delegation_hides_later_roles(drepo):
    repo, srv, tmp = drepo
    ci, late = sslkeys.generate_ed25519_key(), sslkeys.generate_ed25519_key()
    first = repo.delegate("ci", [ci], 1, ["models/*/*/*"], terminating=True)
    second = repo.delegate("late", [late], 1, ["models/*/*/*"])
    repo.release(first, TARGET, b"from ci")
    repo.release(second, "models/det/9.9.9/model.onnx", b"from a later role")
    start(repo, srv, tmp)
    ok(client(srv, tmp, "download", TARGET))
    refused(client(srv, tmp, "download", "models/det/9.9.9/model.onnx"), "lists no target")
    assert not any("late.json" in p for p in srv.requests)
    # Not terminating: the later role is asked, and speaks for it.
    first["terminating"] = False
    repo.publish()
    ok(client(srv, tmp, "download", "models/det/9.9.9/model.onnx"))


def test_paths_bound_each_role(drepo):
    repo, srv, tmp = drepo
    keys = {n: sslkeys.generate_ed25519_key() for n in ("det", "cls")}
    det = repo.delegate("models-det", [keys["det"]], 1, ["models/det/*/*"], terminating=True)
    cls = repo.delegate("models-cls", [keys["cls"]], 1, ["models/cls/*/*"], terminating=True)
    repo.release(det, TARGET, b"det")
    # The cls role lists a det path: outside its paths, so nobody trusted for it lists it.
    repo.release(cls, "models/det/2.0.0/model.onnx", b"det by the cls role")
    repo.release(cls, "models/cls/1.0.0/model.onnx", b"cls")
    start(repo, srv, tmp)
    ok(client(srv, tmp, "download", TARGET))
    ok(client(srv, tmp, "download", "models/cls/1.0.0/model.onnx"))
    refused(client(srv, tmp, "download", "models/det/2.0.0/model.onnx"), "lists no target")
    # '*' does not cross '/': a pattern one level short covers nothing below.
    repo.roles[1]["paths"] = ["models/*"]
    repo.publish()
    refused(client(srv, tmp, "download", "models/cls/1.0.0/model.onnx"), "lists no target")


def test_delegated_role_must_be_what_the_snapshot_lists(drepo):
    repo, srv, tmp = drepo
    ci = sslkeys.generate_ed25519_key()
    role = repo.delegate("ci", [ci], 1, ["models/*/*/*"])
    repo.release(role, TARGET, b"v1")
    start(repo, srv, tmp)
    ok(client(srv, tmp, "download", TARGET))
    # Someone replaces 2.ci.json after the snapshot listed its length: refused.
    repo.publish()
    meta = repo.dir / "metadata" / "2.ci.json"
    meta.write_bytes(meta.read_bytes() + b"\n")
    refused(client(srv, tmp, "download", TARGET), "ci")
