#!/usr/bin/python3
"""An independent verifier of gangliond's TUF image repository and of its director. It shares
no code with lib/: canonical JSON comes from securesystemslib and Ed25519 from
python3-cryptography, so a bug in the server's canonical form, key ids or signatures shows up
here as a failure.

Checks, for a running gangliond: the root chain 1..N (root 1 self-signed to threshold, each N+1
signed by a threshold of N's root keys and of its own), key ids, timestamp -> snapshot (version,
length, SHA-256 of the exact bytes) -> targets (version), every signature, expiries, _type and
spec_version, consistent-snapshot file names, delegations (TUF 5.6.7: each delegated targets
role at the version the snapshot lists, signed to its delegation's threshold, listing only paths
delegated to it, looked up pre-order and depth first with terminating delegations; with the
top-level targets offline, a published version CI has not signed is reported as unreleased, not
as a problem), and that every released model version is a
target with the right length and hash, downloadable at its TUF target path, whose custom digests are the SHA-256 of the bytes served
at .../sample and .../reference-profile.

The director (Uptane's split), a full TUF repository per device: its root chain 1..N under
/v1/tuf/director/ (the four roles), and, with a device's token, that device's timestamp ->
snapshot -> targets chain checked as the image repository's is, with the targets fresh, _type and
spec_version, custom.device_id naming the
device (on the metadata and on every target), and every target listed by the image repository's
verified targets with the same length and SHA-256; an API token gets no device's targets (404).

As a module: verify(url, token) returns a summary dict or raises VerifyError listing every
problem found; verify_director(url, token, device_token, device_id) does the same for the
director. As a command: /usr/bin/python3 tuf_verify.py URL TOKEN [--no-artifacts]
[--device-token T --device-id ID] (the token needs the read scope; exit 0 when everything
verifies, 1 otherwise)."""

import argparse
import datetime
import fnmatch
import hashlib
import json
import re
import sys
import urllib.error
import urllib.parse
import urllib.request

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from securesystemslib.formats import encode_canonical

ROLES = ("root", "targets", "snapshot", "timestamp")
DIRECTOR_ROLES = ROLES  # a full TUF repository per device
SPEC_VERSION = re.compile(r"^1\.\d+\.\d+$")
HEX64 = re.compile(r"^[0-9a-f]{64}$")
HEX128 = re.compile(r"^[0-9a-f]{128}$")
TIME = "%Y-%m-%dT%H:%M:%SZ"
MAX_ROOTS = 10000


class VerifyError(AssertionError):
    """The repository does not verify; .problems lists every finding."""

    def __init__(self, problems):
        self.problems = list(problems)
        super().__init__("TUF verification failed:\n  " + "\n  ".join(self.problems))


class NotFound(Exception):
    pass


def canonical(obj):
    """Returns the OLPC canonical JSON bytes of obj (what TUF signs and hashes for key ids)."""
    return encode_canonical(obj).encode("utf-8")


def sha256_hex(data):
    return hashlib.sha256(data).hexdigest()


def keyid(key):
    """Returns the TUF key id of a key object: SHA-256 of its canonical JSON."""
    return sha256_hex(canonical(key))


def ed25519_key_object(public_raw):
    """Returns the TUF key object of a raw 32-byte Ed25519 public key."""
    return {"keytype": "ed25519", "scheme": "ed25519", "keyval": {"public": public_raw.hex()}}


def sign_metadata(env, private_key):
    """Adds (or replaces) private_key's signature over canonical(env["signed"]); returns env.
    private_key is a cryptography Ed25519PrivateKey."""
    from cryptography.hazmat.primitives import serialization

    pub = private_key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    kid = keyid(ed25519_key_object(pub))
    sig = private_key.sign(canonical(env["signed"])).hex()
    env["signatures"] = [s for s in env.get("signatures", []) if s.get("keyid") != kid]
    env["signatures"].append({"keyid": kid, "sig": sig})
    return env


def parse_time(s):
    """Parses a TUF expiry ("2027-01-01T00:00:00Z") into an aware datetime, or None."""
    try:
        return datetime.datetime.strptime(s, TIME).replace(tzinfo=datetime.timezone.utc)
    except (TypeError, ValueError):
        return None


class Verifier:
    """One verification run against a server; collects problems instead of stopping at the first."""

    def __init__(self, url, token, check_artifacts=True, now=None, timeout=30, repo="image"):
        self.repo = repo
        self.roles = ROLES if repo == "image" else DIRECTOR_ROLES
        self.url = url.rstrip("/")
        self.token = token
        self.check_artifacts = check_artifacts
        self.now = now or datetime.datetime.now(datetime.timezone.utc)
        self.timeout = timeout
        self.problems = []
        self.chain_token = None  # the director's timestamp, snapshot and targets need the device's token
        # No proxies: gangliond is usually on loopback.
        self.opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    # --- HTTP ---------------------------------------------------------------------------------
    def get(self, path, method="GET", token=None):
        """Returns (body bytes, headers) of a 200; raises NotFound on 404, VerifyError otherwise."""
        req = urllib.request.Request(self.url + path, method=method)
        if token or self.token:
            req.add_header("Authorization", f"Bearer {token or self.token}")
        try:
            with self.opener.open(req, timeout=self.timeout) as r:
                return r.read(), r.headers
        except urllib.error.HTTPError as e:
            if e.code == 404:
                raise NotFound(path) from None
            raise VerifyError([f"{method} {path}: HTTP {e.code} {e.read()[:300]!r}"]) from None
        except OSError as e:
            raise VerifyError([f"{method} {path}: {e}"]) from None

    def get_json(self, path, token=None):
        body, _ = self.get(path, token=token)
        try:
            return json.loads(body), body
        except ValueError as e:
            raise VerifyError([f"GET {path}: not JSON: {e}"]) from None

    def problem(self, msg):
        self.problems.append(msg)

    # --- metadata checks ----------------------------------------------------------------------
    def check_header(self, name, env, role, expect_expired_ok=False):
        """Checks the envelope shape and the common fields of env["signed"]."""
        if not isinstance(env, dict) or set(env) != {"signed", "signatures"}:
            self.problem(f"{name}: the envelope must be exactly {{signed, signatures}}")
            return False
        s = env["signed"]
        if not isinstance(s, dict) or not isinstance(env["signatures"], list):
            self.problem(f"{name}: signed must be an object and signatures an array")
            return False
        if s.get("_type") != role:
            self.problem(f"{name}: _type is {s.get('_type')!r}, expected {role!r}")
        if not isinstance(s.get("spec_version"), str) or not SPEC_VERSION.match(s["spec_version"]):
            self.problem(f"{name}: spec_version {s.get('spec_version')!r} is not 1.x.y")
        v = s.get("version")
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            self.problem(f"{name}: version {v!r} is not a positive integer")
        exp = parse_time(s.get("expires"))
        if exp is None:
            self.problem(f"{name}: expires {s.get('expires')!r} is not YYYY-MM-DDTHH:MM:SSZ")
        elif exp <= self.now and not expect_expired_ok:
            self.problem(f"{name}: expired at {s['expires']}")
        return True

    def check_root_keys(self, name, signed):
        """Checks the keys and roles of a root; returns (keys, roles) as found."""
        keys = signed.get("keys")
        roles = signed.get("roles")
        if not isinstance(keys, dict) or not isinstance(roles, dict):
            self.problem(f"{name}: keys and roles must be objects")
            return {}, {}
        for kid, key in keys.items():
            if not isinstance(key, dict):
                self.problem(f"{name}: key {kid} is not an object")
                continue
            if key.get("keytype") != "ed25519" or key.get("scheme") != "ed25519":
                self.problem(f"{name}: key {kid} is {key.get('keytype')}/{key.get('scheme')}, expected ed25519/ed25519")
            pub = (key.get("keyval") or {}).get("public")
            if not isinstance(pub, str) or not HEX64.match(pub):
                self.problem(f"{name}: key {kid} keyval.public is not 64 hex digits")
            if keyid(key) != kid:
                self.problem(f"{name}: key id {kid} is not sha256(canonical(key)) = {keyid(key)}")
        if set(roles) != set(self.roles):
            self.problem(f"{name}: roles are {sorted(roles)}, expected {sorted(self.roles)}")
        for role in self.roles:
            r = roles.get(role) or {}
            ids, th = r.get("keyids"), r.get("threshold")
            if not isinstance(ids, list) or not ids:
                self.problem(f"{name}: role {role} has no keyids")
                continue
            if len(set(ids)) != len(ids):
                self.problem(f"{name}: role {role} lists a key id twice")
            for kid in ids:
                if kid not in keys:
                    self.problem(f"{name}: role {role} names key {kid}, which is not in keys")
            if not isinstance(th, int) or isinstance(th, bool) or th < 1 or th > len(set(ids)):
                self.problem(f"{name}: role {role} threshold {th!r} is not in 1..{len(set(ids))}")
        if signed.get("consistent_snapshot") is not True:
            self.problem(f"{name}: consistent_snapshot is not true")
        return keys, roles

    def count_valid(self, name, env, keys, keyids):
        """Returns the number of distinct keys of keyids with a valid signature on env."""
        msg = canonical(env["signed"])
        valid = set()
        for sig in env["signatures"]:
            kid = sig.get("keyid") if isinstance(sig, dict) else None
            if kid not in keyids or kid not in keys:
                continue
            if self.sig_ok(msg, keys[kid], sig):
                valid.add(kid)
        return len(valid)

    def sig_ok(self, msg, key, sig):
        try:
            pub = Ed25519PublicKey.from_public_bytes(bytes.fromhex(key["keyval"]["public"]))
            s = sig.get("sig")
            if not isinstance(s, str) or not HEX128.match(s):
                return False
            pub.verify(bytes.fromhex(s), msg)
            return True
        except (InvalidSignature, ValueError, KeyError, TypeError):
            return False

    def check_every_signature(self, name, env, keys):
        """Every signature present must be well formed, by a key in keys, and valid."""
        msg = canonical(env["signed"])
        for i, sig in enumerate(env["signatures"]):
            if not isinstance(sig, dict) or set(sig) != {"keyid", "sig"}:
                self.problem(f"{name}: signatures[{i}] is not {{keyid, sig}}")
                continue
            if sig["keyid"] not in keys:
                self.problem(f"{name}: signatures[{i}] is by unknown key {sig['keyid']}")
            elif not self.sig_ok(msg, keys[sig["keyid"]], sig):
                self.problem(f"{name}: signatures[{i}] by {sig['keyid']} does not verify")

    def check_threshold(self, name, env, root_signed, role, by=""):
        r = root_signed.get("roles", {}).get(role, {})
        ids, th = r.get("keyids") or [], r.get("threshold")
        n = self.count_valid(name, env, root_signed.get("keys", {}), ids)
        if not isinstance(th, int) or n < th:
            self.problem(f"{name}: {n} valid signature(s) from {by}{role} keys, threshold {th}")

    # --- the walk -----------------------------------------------------------------------------
    def verify_roots(self):
        """Walks 1.root.json .. N.root.json; returns the newest root's signed part and version."""
        prev = None
        n = 0
        for v in range(1, MAX_ROOTS):
            try:
                env, raw = self.get_json(f"/v1/tuf/{self.repo}/{v}.root.json")
            except NotFound:
                break
            name = f"{v}.root.json"
            n = v
            if not self.check_header(name, env, "root", expect_expired_ok=True):
                raise VerifyError(self.problems)
            s = env["signed"]
            if s.get("version") != v:
                self.problem(f"{name}: version is {s.get('version')}")
            keys, _ = self.check_root_keys(name, s)
            allkeys = dict(keys)
            if prev is not None:
                allkeys.update(prev.get("keys", {}))
                self.check_threshold(name, env, prev, "root", by=f"version {v - 1}'s ")
            self.check_threshold(name, env, s, "root", by="its own ")
            self.check_every_signature(name, env, allkeys)
            prev = s
        if prev is None:
            raise VerifyError(self.problems + ["1.root.json: not found"])
        exp = parse_time(prev.get("expires"))
        if exp is not None and exp <= self.now:
            self.problem(f"{n}.root.json (the newest) expired at {prev['expires']}")
        env, raw = self.get_json(f"/v1/tuf/{self.repo}/root.json")
        if env.get("signed", {}).get("version") != n:
            self.problem(f"root.json is version {env.get('signed', {}).get('version')}, but {n}.root.json is the newest")
        else:
            body, _ = self.get(f"/v1/tuf/{self.repo}/{n}.root.json")
            if body != raw:
                self.problem(f"root.json and {n}.root.json differ")
        return prev, n

    def verify_role(self, name, raw, env, root, role):
        self.check_header(name, env, role)
        self.check_threshold(name, env, root, role)
        keys = {k: root["keys"][k] for k in root["roles"][role]["keyids"] if k in root["keys"]}
        self.check_every_signature(name, env, keys)

    def verify_chain(self, root):
        """timestamp -> snapshot -> targets; returns (timestamp, snapshot, targets) signed parts."""
        ts_env, _ = self.get_json(f"/v1/tuf/{self.repo}/timestamp.json", token=self.chain_token)
        self.verify_role("timestamp.json", None, ts_env, root, "timestamp")
        ts = ts_env["signed"]
        meta = ts.get("meta")
        if not isinstance(meta, dict) or set(meta) != {"snapshot.json"}:
            raise VerifyError(self.problems + [f"timestamp.json: meta must name exactly snapshot.json, got {meta!r}"])
        m = meta["snapshot.json"]
        sv = m.get("version")
        if not isinstance(sv, int) or sv < 1:
            raise VerifyError(self.problems + [f"timestamp.json: snapshot version {sv!r}"])
        # Consistent snapshots: the client asks for VERSION.snapshot.json.
        sn_raw, _ = self.get(f"/v1/tuf/{self.repo}/{sv}.snapshot.json", token=self.chain_token)
        if m.get("length") != len(sn_raw):
            self.problem(f"timestamp.json states snapshot length {m.get('length')}, {sv}.snapshot.json is {len(sn_raw)} bytes")
        want = (m.get("hashes") or {}).get("sha256")
        if want != sha256_hex(sn_raw):
            self.problem(f"timestamp.json states snapshot sha256 {want}, {sv}.snapshot.json hashes to {sha256_hex(sn_raw)}")
        sn_env = json.loads(sn_raw)
        self.verify_role(f"{sv}.snapshot.json", sn_raw, sn_env, root, "snapshot")
        sn = sn_env["signed"]
        if sn.get("version") != sv:
            self.problem(f"{sv}.snapshot.json: version is {sn.get('version')}")
        latest, _ = self.get(f"/v1/tuf/{self.repo}/snapshot.json", token=self.chain_token)
        if latest != sn_raw:
            self.problem(f"snapshot.json differs from {sv}.snapshot.json, the one timestamp.json names")
        smeta = sn.get("meta")
        if not isinstance(smeta, dict) or "targets.json" not in smeta:
            raise VerifyError(self.problems + [f"{sv}.snapshot.json: meta lacks targets.json: {smeta!r}"])
        tv = smeta["targets.json"].get("version")
        if not isinstance(tv, int) or tv < 1:
            raise VerifyError(self.problems + [f"{sv}.snapshot.json: targets version {tv!r}"])
        tg_raw, _ = self.get(f"/v1/tuf/{self.repo}/{tv}.targets.json", token=self.chain_token)
        if "length" in smeta["targets.json"] and smeta["targets.json"]["length"] != len(tg_raw):
            self.problem(f"{sv}.snapshot.json: targets length does not match {tv}.targets.json")
        th = (smeta["targets.json"].get("hashes") or {}).get("sha256")
        if th is not None and th != sha256_hex(tg_raw):
            self.problem(f"{sv}.snapshot.json: targets sha256 does not match {tv}.targets.json")
        tg_env = json.loads(tg_raw)
        self.verify_role(f"{tv}.targets.json", tg_raw, tg_env, root, "targets")
        tg = tg_env["signed"]
        if tg.get("version") != tv:
            self.problem(f"{tv}.targets.json: version is {tg.get('version')}")
        latest, _ = self.get(f"/v1/tuf/{self.repo}/targets.json", token=self.chain_token)
        if latest != tg_raw:
            self.problem(f"targets.json differs from {tv}.targets.json, the one the snapshot names")
        if not isinstance(tg.get("targets"), dict):
            raise VerifyError(self.problems + [f"{tv}.targets.json: targets is not an object"])
        for path, t in tg["targets"].items():
            ok = (isinstance(t, dict) and isinstance(t.get("length"), int) and t["length"] >= 0
                  and isinstance((t.get("hashes") or {}).get("sha256"), str) and HEX64.match(t["hashes"]["sha256"]))
            if not ok:
                self.problem(f"target {path}: needs a length and hashes.sha256")
        return ts, sn, tg

    # --- delegations (TUF 5.6.7) ---------------------------------------------------------------
    @staticmethod
    def path_matches(role, path):
        """The specification's rule: shell-style patterns whose wildcards never match '/' (so a
        pattern and a path have as many '/'-separated parts), or a prefix of the path's SHA-256."""
        if "paths" in role:
            parts = path.split("/")
            return any(len(p.split("/")) == len(parts) and
                       all(fnmatch.fnmatchcase(a, b) for a, b in zip(parts, p.split("/")))
                       for p in role["paths"])
        return any(sha256_hex(path.encode()).startswith(p) for p in role.get("path_hash_prefixes", []))

    def delegated(self, name, delegations, smeta):
        """Fetches and checks delegated role `name` (its entry in delegations["roles"]); returns its
        signed part, or None (the problem recorded)."""
        role = next(r for r in delegations["roles"] if r.get("name") == name)
        m = smeta.get(f"{name}.json")
        if not isinstance(m, dict) or not isinstance(m.get("version"), int):
            self.problem(f"snapshot lists no version of delegated role {name}")
            return None
        file = f"{m['version']}.{name}.json"
        raw, _ = self.get(f"/v1/tuf/image/{file}")
        if "length" in m and m["length"] != len(raw):
            self.problem(f"{file}: the snapshot lists {m['length']} bytes, it has {len(raw)}")
        env = json.loads(raw)
        if not self.check_header(file, env, "targets"):
            return None
        fake_root = {"keys": delegations.get("keys", {}),
                     "roles": {name: {"keyids": role.get("keyids"), "threshold": role.get("threshold")}}}
        before = len(self.problems)
        self.check_threshold(file, env, fake_root, name, by="delegated ")
        self.check_every_signature(file, env, {k: fake_root["keys"][k] for k in role.get("keyids", [])
                                               if k in fake_root["keys"]})
        if env["signed"].get("version") != m["version"]:
            self.problem(f"{file}: version is {env['signed'].get('version')}")
        for path in env["signed"].get("targets", {}):
            if not self.path_matches(role, path):
                self.problem(f"{file}: lists {path}, outside the paths delegated to {name}")
        return env["signed"] if len(self.problems) == before else None

    def find_target(self, path, top, smeta, cache):
        """The entry for path through delegations (pre-order depth-first, each role once, at most
        32, a terminating delegation ending the search), or None."""
        if path in top.get("targets", {}):
            return top["targets"][path]
        stack, visited = [], set()

        def push(signed):
            d = signed.get("delegations") or {}
            children = []
            for r in d.get("roles", []):
                if self.path_matches(r, path):
                    children.append((r["name"], d))
                    if r.get("terminating"):
                        stack.clear()
                        break
            stack.extend(reversed(children))

        push(top)
        while stack and len(visited) < 31:
            name, d = stack.pop()
            if name in visited:
                continue
            visited.add(name)
            if name not in cache:
                cache[name] = self.delegated(name, d, smeta)
            signed = cache[name]
            if signed is None:
                return None
            if path in signed.get("targets", {}):
                return signed["targets"][path]
            push(signed)
        return None

    def effective_targets(self, top, smeta):
        """{path: entry} of every target the repository signs, top-level or delegated."""
        cache, paths, todo = {}, set(top.get("targets", {})), [top]
        while todo:  # every delegated role reachable, for the paths they list
            d = todo.pop().get("delegations") or {}
            for r in d.get("roles", []):
                if r.get("name") not in cache:
                    cache[r["name"]] = self.delegated(r["name"], d, smeta)
                    if cache[r["name"]] is not None:
                        paths |= set(cache[r["name"]].get("targets", {}))
                        todo.append(cache[r["name"]])
        found = {p: self.find_target(p, top, smeta, cache) for p in sorted(paths)}
        return {p: e for p, e in found.items() if e is not None}

    def models(self):
        """Returns {name: [version strings]} for every published model version."""
        out = {}
        cursor = None
        while True:
            q = "?limit=1000" + (f"&cursor={urllib.parse.quote(cursor)}" if cursor else "")
            page, _ = self.get_json("/v1/models" + q)
            for m in page["items"]:
                detail, _ = self.get_json(f"/v1/models/{urllib.parse.quote(m['name'])}")
                out[m["name"]] = [v["version"] for v in detail["versions"]]
            cursor = page.get("next_cursor")
            if not cursor:
                return out

    def verify_models(self, targets, delegated=False):
        """Every published version is a target with the right length, hash and custom digests
        (with delegations, one CI has not signed is unreleased: self.unreleased); every target is
        a published version."""
        seen = set()
        self.unreleased = []
        for name, versions in self.models().items():
            for ver in versions:
                base = f"/v1/models/{urllib.parse.quote(name)}/versions/{urllib.parse.quote(ver)}"
                v, _ = self.get_json(base)
                path = f"models/{name}/{ver}/{v['filename']}"
                seen.add(path)
                t = targets.get(path)
                if t is None and delegated:
                    self.unreleased.append(path)
                    continue
                if t is None:
                    self.problem(f"{name} {ver}: no target {path}")
                    continue
                if t.get("length") != v["artifact"]["length"]:
                    self.problem(f"target {path}: length {t.get('length')}, the version says {v['artifact']['length']}")
                if (t.get("hashes") or {}).get("sha256") != v["artifact"]["sha256"]:
                    self.problem(f"target {path}: sha256 differs from the version's artifact")
                c = t.get("custom") or {}
                for k, want in (("model", name), ("version", ver), ("format", v["format"])):
                    if c.get(k) != want:
                        self.problem(f"target {path}: custom.{k} is {c.get(k)!r}, expected {want!r}")
                for k in ("requirements", "inputs", "outputs", "published_at"):
                    if k not in c:
                        self.problem(f"target {path}: custom lacks {k}")
                self.check_digest(path, c, "sample_sha256", base + "/sample", v.get("sample"))
                self.check_digest(path, c, "reference_profile_sha256", base + "/reference-profile",
                                  v.get("reference_profile"))
                if self.check_artifacts:
                    self.check_artifact(path, t)
        for path in targets:
            if path not in seen:
                self.problem(f"target {path}: not a published model version")
        return len(seen)

    def check_digest(self, path, custom, field, url, value):
        if field not in custom:
            self.problem(f"target {path}: custom lacks {field}")
            return
        want = custom[field]
        try:
            body, _ = self.get(url)
        except NotFound:
            body = None
        if want is None:
            if value is not None or body is not None:
                self.problem(f"target {path}: custom.{field} is null, but {url} serves one")
            return
        if body is None:
            self.problem(f"target {path}: custom.{field} is set, but {url} is 404")
        elif sha256_hex(body) != want:
            self.problem(f"target {path}: custom.{field} {want} is not the SHA-256 of {url} ({sha256_hex(body)})")
        elif json.loads(body) != value:
            self.problem(f"target {path}: {url} differs from the version object's {field[:-7]}")

    def check_artifact(self, path, t):
        """The target's bytes, at its TUF path (consistent snapshots: DIR/HASH.NAME under
        targets/) and under its content address, must be what targets lists."""
        digest = t["hashes"]["sha256"]
        d, _, base = path.rpartition("/")
        for url in (f"/v1/tuf/image/targets/{d}/{digest}.{base}", f"/v1/artifacts/sha256/{digest}"):
            body, _ = self.get(url)
            if len(body) != t["length"] or sha256_hex(body) != digest:
                self.problem(f"target {path}: {url} serves {len(body)} bytes hashing to {sha256_hex(body)}")

    def run(self):
        root, root_version = self.verify_roots()
        ts, sn, tg = self.verify_chain(root)
        delegations = [r["name"] for r in (tg.get("delegations") or {}).get("roles", [])]
        targets = self.effective_targets(tg, sn["meta"]) if delegations else tg["targets"]
        n = self.verify_models(targets, delegated=bool(delegations))
        if self.problems:
            raise VerifyError(self.problems)
        return {
            "root_version": root_version,
            "timestamp_version": ts["version"],
            "snapshot_version": sn["version"],
            "targets_version": tg["version"],
            "targets": sorted(targets),
            "delegated_roles": delegations,
            "unreleased": self.unreleased,
            "model_versions": n,
            "expires": {"root": root["expires"], "timestamp": ts["expires"], "snapshot": sn["expires"],
                        "targets": tg["expires"]},
            "keyids": {r: list(root["roles"][r]["keyids"]) for r in ROLES},
        }


    def run_director(self, device_token, device_id, image_targets):
        """The director's root chain, and (with a device token) the device's targets checked
        against image_targets (the image repository's verified targets)."""
        root, root_version = self.verify_roots()
        summary = {"root_version": root_version, "keyids": {r: list(root["roles"][r]["keyids"]) for r in self.roles}}
        # Per device only: an API token gets none (404), whoever it belongs to.
        try:
            self.get("/v1/tuf/director/targets.json")
            self.problem("director targets.json was served to an API token")
        except NotFound:
            pass
        for f in ("timestamp.json", "snapshot.json"):
            try:
                self.get(f"/v1/tuf/director/{f}")
                self.problem(f"director {f} was served to an API token")
            except NotFound:
                pass
        if device_token:
            # The device's own repository: timestamp -> snapshot -> targets, as the image's.
            self.chain_token = device_token
            ts, sn, _ = self.verify_chain(root)
            env, _ = self.get_json("/v1/tuf/director/targets.json", token=device_token)
            name = "director targets.json"
            if self.check_header(name, env, "targets"):
                s = env["signed"]
                custom = s.get("custom") or {}
                if custom.get("device_id") != device_id:
                    self.problem(f"{name}: custom.device_id is {custom.get('device_id')!r}, expected {device_id!r}")
                if parse_time(custom.get("issued_at")) is None:
                    self.problem(f"{name}: custom.issued_at {custom.get('issued_at')!r} is not a TUF time")
                targets = s.get("targets")
                if not isinstance(targets, dict):
                    self.problem(f"{name}: targets is not an object")
                    targets = {}
                for path, t in targets.items():
                    if ((t or {}).get("custom") or {}).get("device_id") != device_id:
                        self.problem(f"{name}: target {path} names device {((t or {}).get('custom') or {}).get('device_id')!r}")
                    img = image_targets.get(path)
                    if img is None:
                        self.problem(f"{name}: target {path} is not signed by the image repository")
                        continue
                    if t.get("length") != img.get("length") or \
                            (t.get("hashes") or {}).get("sha256") != (img.get("hashes") or {}).get("sha256"):
                        self.problem(f"{name}: target {path} differs from the image repository's (length or sha256)")
                summary.update(targets_version=s.get("version"), targets=sorted(targets), expires=s.get("expires"),
                               snapshot_version=sn["version"], timestamp_version=ts["version"])
        if self.problems:
            raise VerifyError(self.problems)
        return summary


def verify_director(url, token, device_token=None, device_id=None, now=None):
    """Verifies the image repository (for its targets), then the director: its root chain and,
    with device_token, that device's targets. Returns the director summary or raises VerifyError."""
    image = Verifier(url, token, check_artifacts=False, now=now)
    root, _ = image.verify_roots()
    _, sn, tg = image.verify_chain(root)
    targets = image.effective_targets(tg, sn["meta"]) if tg.get("delegations") else tg["targets"]
    if image.problems:
        raise VerifyError(image.problems)
    return Verifier(url, token, now=now, repo="director").run_director(device_token, device_id, targets)


def verify(url, token, check_artifacts=True, now=None):
    """Verifies the whole repository of the gangliond at url; returns a summary (versions,
    target paths, expiries, key ids) or raises VerifyError."""
    return Verifier(url, token, check_artifacts=check_artifacts, now=now).run()


def main(argv=None):
    ap = argparse.ArgumentParser(description="Verify a gangliond's TUF image repository independently.")
    ap.add_argument("url", help="base URL, e.g. http://127.0.0.1:7700")
    ap.add_argument("token", help="API token with the read scope")
    ap.add_argument("--no-artifacts", action="store_true", help="do not download artifacts to hash them")
    ap.add_argument("--device-token", help="also verify this device's director targets (with --device-id)")
    ap.add_argument("--device-id", help="the device the token belongs to")
    a = ap.parse_args(argv)
    try:
        summary = verify(a.url, a.token, check_artifacts=not a.no_artifacts)
        summary["director"] = verify_director(a.url, a.token, a.device_token, a.device_id)
    except VerifyError as e:
        print(e, file=sys.stderr)
        return 1
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
