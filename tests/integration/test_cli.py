"""The ganglion CLI against a real gangliond: an operator's day, and the exit codes scripts
rely on (0 ok, 2 usage, 3 auth, 4 not found, 5 conflict, 6 unreachable, 7 invalid)."""

import http.server
import json
import os
import re
import socket
import subprocess
import threading
import time
import uuid

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from ganglion_harness import (
    ADMIN,
    GANGLION_CLI,
    NO_TOKEN,
    assert_problem,
    child_env,
    enroll_device,
    free_port,
    list_all,
    make_dir,
    model_meta,
    new_key,
    public_hex,
    publish,
)


def _json(p):
    assert p.returncode == 0, f"exit {p.returncode}\nstdout: {p.stdout}\nstderr: {p.stderr}"
    return json.loads(p.stdout)


def _items(out):
    return out["items"] if isinstance(out, dict) else out


def test_operator_workflow(server):
    # make an enrollment token with labels
    et = _json(server.cli("enroll-tokens", "create", "--name", "cams", "--label", "site=north",
                          "--label", "type=camera", "--max-uses", "2", output="json"))
    assert et["token"].startswith("gne_") and et["labels"] == {"site": "north", "type": "camera"}
    assert et["max_uses"] == 2
    dev = enroll_device(server, enroll_token=et["token"], name="cam-7")

    listed = _items(_json(server.cli("enroll-tokens", "list", output="json")))
    assert [(t["id"], t["uses"]) for t in listed] == [(et["id"], 1)]
    assert et["token"] not in server.cli("enroll-tokens", "list").stdout

    # relabel: set one, change one, remove one
    p = server.cli("devices", "label", dev.id, "floor=2", "type-")
    assert p.returncode == 0, p.stderr
    shown = _json(server.cli("devices", "show", dev.id, output="json"))
    assert shown["labels"] == {"site": "north", "floor": "2"}
    p = server.cli("devices", "show", dev.id)
    assert p.returncode == 0 and dev.id in p.stdout and "cam-7" in p.stdout, p.stdout

    # revoke the enrollment token: the second use is refused
    p = server.cli("enroll-tokens", "revoke", et["id"])
    assert p.returncode == 0, p.stderr
    r = server.api("POST", "/v1/enroll", token=NO_TOKEN,
                   json={"token": et["token"], "public_key": public_hex(new_key())})
    assert_problem(r, 401)

    # decommission
    p = server.cli("devices", "decommission", dev.id)
    assert p.returncode == 0, p.stderr
    assert server.api("GET", f"/v1/devices/{dev.id}").json()["status"] == "decommissioned"
    active = _items(_json(server.cli("devices", "list", "--status", "active", output="json")))
    assert active == []

    # the audit log shows what happened, newest first
    entries = _items(_json(server.cli("audit", "list", output="json")))
    actions = [e["action"] for e in entries]
    want = ["device.decommission", "enroll_token.revoke", "device.update", "device.enroll", "enroll_token.create"]
    assert actions[: len(want)] == want, actions
    p = server.cli("audit", "list")
    assert p.returncode == 0 and "device.decommission" in p.stdout, p.stdout


def test_api_tokens_via_cli(server):
    t = _json(server.cli("tokens", "create", "--name", "grafana", "--scope", "read", output="json"))
    assert t["token"].startswith("gna_") and t["scopes"] == ["read"]
    # the new token works for the CLI too, within its scope
    p = server.cli("devices", "list", token=t["token"], output="json")
    assert p.returncode == 0, p.stderr
    p = server.cli("tokens", "list", token=t["token"])
    assert p.returncode == 3, f"read token listing tokens: exit {p.returncode}\n{p.stderr}"

    table = server.cli("tokens", "list")
    assert table.returncode == 0 and "grafana" in table.stdout
    assert t["token"] not in table.stdout
    p = server.cli("tokens", "revoke", t["id"])
    assert p.returncode == 0, p.stderr
    assert server.cli("devices", "list", token=t["token"]).returncode == 3
    # the table output's secret is printed once too
    p = server.cli("tokens", "create", "--name", "ops", "--scope", "operator,read")
    assert p.returncode == 0, p.stderr
    assert "gna_" in p.stdout


def test_exit_codes(server):
    dev = enroll_device(server)
    missing = str(uuid.uuid4())
    cases = [
        (0, server.cli("devices", "show", dev.id)),
        (2, server.cli("devices", "frobnicate")),
        (2, server.cli("no-such-command")),
        (2, server.cli("devices", "list", "--selector", "=north")),
        (2, server.cli("devices", "show")),
        (3, server.cli("devices", "list", token="gna_" + "0" * 40)),
        (3, server.cli("devices", "list", token=NO_TOKEN)),
        (4, server.cli("devices", "show", missing)),
        (4, server.cli("tokens", "revoke", missing)),
        (6, server.cli("devices", "list", url=f"http://127.0.0.1:{free_port()}")),
        (7, server.cli("tokens", "create", "--name", "x", "--scope", "superuser")),
    ]
    for want, p in cases:
        assert p.returncode == want, f"{p.args[5:]}: exit {p.returncode}, want {want}\n{p.stderr}"
        if want:
            assert p.stderr.strip(), f"{p.args[5:]}: failed without a message"
    # nothing was created by the failed create
    assert "x" not in [t["name"] for t in list_all(server, "/v1/tokens")[0]]



# --- the settings: flags, GANGLION_* variables, the config file, @FILE tokens, --timeout ----------
def _cli(server, *args, env=None, token=ADMIN, url=True, timeout=60):
    """Runs the CLI with exactly these arguments (no --url/--token unless asked) and env on top of
    an empty config home; returns the CompletedProcess."""
    xdg = make_dir(server.workdir / "xdg-settings", 0o700)
    cmd = [str(GANGLION_CLI)]
    if url:
        cmd += ["--url", server.url]
    if token is ADMIN:
        cmd += ["--token", server.admin_token]
    elif token is not None:
        cmd += ["--token", token]
    cmd += [str(a) for a in args]
    return subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=timeout,
                          env=child_env(XDG_CONFIG_HOME=str(xdg), HOME=str(xdg), **(env or {})),
                          stdin=subprocess.DEVNULL)


def test_settings_from_environment_config_file_and_token_files(server, workdir):
    enroll_device(server, name="settings-dev")
    read = server.make_token(["read"])["token"]
    # GANGLION_URL, GANGLION_TOKEN, GANGLION_OUTPUT.
    p = _cli(server, "devices", "list", url=False, token=None,
             env={"GANGLION_URL": server.url, "GANGLION_TOKEN": read, "GANGLION_OUTPUT": "json"})
    assert [d["name"] for d in _json(p)["items"]] == ["settings-dev"]
    # A token file: --token @FILE, whitespace around it removed.
    tokfile = workdir / "token"
    tokfile.write_text(f"\n  {read}\n\n")
    os.chmod(tokfile, 0o600)
    assert _cli(server, "devices", "list", "-o", "json", token=f"@{tokfile}").returncode == 0
    p = _cli(server, "devices", "list", token=f"@{workdir / 'missing'}")
    assert p.returncode == 2 and "missing" in p.stderr, (p.returncode, p.stderr)
    # The default config file ($XDG_CONFIG_HOME/ganglion/config), with a [ganglion] section and comments.
    xdg = make_dir(server.workdir / "xdg-settings", 0o700)
    conf_dir = make_dir(xdg / "ganglion", 0o700)
    (conf_dir / "config").write_text(f"# comment\n; another\n[ganglion]\nurl = {server.url}\ntoken = @{tokfile}\n"
                                     "output = json\ntimeout = 20s\n")
    p = _cli(server, "devices", "list", url=False, token=None)
    assert [d["name"] for d in _json(p)["items"]] == ["settings-dev"]
    # Precedence: flags > environment > file.
    p = _cli(server, "devices", "list", url=False, token=None, env={"GANGLION_OUTPUT": "table"})
    assert p.returncode == 0 and "settings-dev" in p.stdout and not p.stdout.lstrip().startswith("{"), p.stdout
    p = _cli(server, "devices", "list", "-o", "json", url=False, token=None, env={"GANGLION_OUTPUT": "table"})
    assert _json(p)["items"][0]["name"] == "settings-dev"
    p = _cli(server, "devices", "list", url=False, token=None, env={"GANGLION_TOKEN": "gna_" + "0" * 43})
    assert p.returncode == 3, (p.returncode, p.stderr)
    p = _cli(server, "devices", "list", url=False, token=None, env={"GANGLION_URL": f"http://127.0.0.1:{free_port()}"})
    assert p.returncode == 6, (p.returncode, p.stderr)
    # --config / GANGLION_CONFIG name another file, which must exist; unknown keys are errors.
    other = workdir / "other.conf"
    other.write_text(f"url = {server.url}\ntoken = {read}\n")
    p = _cli(server, "devices", "list", "-o", "json", "--config", other, url=False, token=None)
    assert p.returncode == 0, p.stderr
    p = _cli(server, "devices", "list", "-o", "json", url=False, token=None, env={"GANGLION_CONFIG": str(other)})
    assert p.returncode == 0, p.stderr
    p = _cli(server, "devices", "list", "--config", workdir / "nope.conf", url=False, token=None)
    assert p.returncode == 2, (p.returncode, p.stderr)
    other.write_text(f"url = {server.url}\ntokn = {read}\n")
    p = _cli(server, "devices", "list", "--config", other, url=False, token=None)
    assert p.returncode == 2 and "tokn" in p.stderr, (p.returncode, p.stderr)


def test_timeout(server):
    """--timeout bounds a request to a server that accepts and never answers: exit 6, soon."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    port = listener.getsockname()[1]
    try:
        t = time.monotonic()
        p = _cli(server, "devices", "list", "--url", f"http://127.0.0.1:{port}", "--timeout", "2s", url=False)
        took = time.monotonic() - t
        assert p.returncode == 6, (p.returncode, p.stderr)
        assert 1.5 <= took < 30, f"gave up after {took:.1f} s with --timeout 2s"
        t = time.monotonic()
        p = _cli(server, "devices", "list", "--url", f"http://127.0.0.1:{port}", url=False,
                 env={"GANGLION_TIMEOUT": "1s"})
        assert p.returncode == 6 and time.monotonic() - t < 30, (p.returncode, p.stderr)
    finally:
        listener.close()
    for bad in ("0s", "2h", "soon"):  # 1 s to 1 h
        p = _cli(server, "devices", "list", "--timeout", bad)
        assert p.returncode == 2, (bad, p.returncode, p.stderr)


def test_limit_and_all(server):
    for i in range(5):
        enroll_device(server, name=f"pg-{i}")
    page = _json(server.cli("devices", "list", "--limit", "2", output="json"))
    assert len(page["items"]) == 2 and page["next_cursor"], page
    every = _json(server.cli("devices", "list", "--limit", "2", "--all", output="json"))
    assert sorted(d["name"] for d in every["items"]) == [f"pg-{i}" for i in range(5)], every
    assert len({d["id"] for d in every["items"]}) == 5
    for bad in ("0", "1001", "x"):
        assert server.cli("devices", "list", "--limit", bad).returncode == 2, bad
    for i in range(3):
        server.make_token(["read"], name=f"audit-{i}")
    audit = _json(server.cli("audit", "list", "--limit", "1", "--all", output="json"))
    assert [e["object_id"] for e in audit["items"]] == \
        [e["object_id"] for e in list_all(server, "/v1/audit")[0]]
    assert len(_json(server.cli("audit", "list", "--limit", "1", output="json"))["items"]) == 1


# --- devices assign, unassign, events ------------------------------------------------------------
def test_devices_assign_unassign_events(server):
    for v in ("1.0.0", "1.1.0"):
        assert publish(server, "det", v.encode(), meta=model_meta(v)).status_code == 201
    assert server.api("PUT", "/v1/models/det/aliases/prod", json={"version": "1.1.0"}).status_code == 200
    a = enroll_device(server, labels={"site": "north"})
    b = enroll_device(server, labels={"site": "north"})
    c = enroll_device(server, labels={"site": "south"})
    op = server.make_token(["operator"])["token"]
    out = _json(server.cli("devices", "assign", a.id, "det@prod", token=op, output="json"))
    assert out["device_id"] == a.id and out["version"] == "1.1.0", out
    assert server.api("GET", f"/v1/devices/{a.id}").json()["desired"][0]["version"] == "1.1.0"
    p = server.cli("devices", "assign", "--selector", "site=north", "det@1.0.0", token=op)
    assert p.returncode == 0, p.stderr
    assert "2" in p.stdout, p.stdout
    for d, want in ((a, "1.0.0"), (b, "1.0.0")):
        assert server.api("GET", f"/v1/devices/{d.id}").json()["desired"][0]["version"] == want
    assert server.api("GET", f"/v1/devices/{c.id}").json()["desired"] == []
    # Refused before or by the server, with the documented exit codes.
    for args, code in ((("devices", "assign", a.id, "det"), 2),
                       (("devices", "assign", a.id, "det@9.9.9"), 4), (("devices", "assign", str(uuid.uuid4()), "det@1.0.0"), 4),
                       (("devices", "assign", "--selector", "", "det@1.0.0"), 7),
                       (("devices", "assign", "--selector", "=x", "det@1.0.0"), 2)):
        p = server.cli(*args, token=op)
        assert p.returncode == code, (args, p.returncode, p.stderr)
    assert server.cli("devices", "assign", a.id, "det@1.0.0", token=server.make_token(["read"])["token"]).returncode == 3
    p = server.cli("devices", "unassign", a.id, token=op)
    assert p.returncode == 0 and a.id in p.stdout, (p.returncode, p.stdout, p.stderr)
    assert server.api("GET", f"/v1/devices/{a.id}").json()["desired"] == []
    assert server.cli("devices", "unassign", str(uuid.uuid4()), token=op).returncode == 4

    # events: what the device reported, newest first.
    tok = b.authenticate(server)
    for st in ("downloading", "active"):
        r = server.api("POST", "/v1/agent/checkin", token=tok,
                       json={"last_operation": {"state": st, "model": "det", "version": "1.0.0"}})
        assert r.status_code == 200, r.text
    ev = _json(server.cli("devices", "events", b.id, output="json"))
    assert [e["operation"]["state"] for e in ev["items"]] == ["active", "downloading"], ev
    p = server.cli("devices", "events", b.id)
    assert p.returncode == 0 and p.stdout.index("active") < p.stdout.index("downloading"), p.stdout
    assert _json(server.cli("devices", "events", c.id, output="json"))["items"] == []


# --- keys export-root to stdout, sign-root refusals ---------------------------------------------------
def test_keys_export_root_to_stdout_and_sign_root_refusals(server, workdir):
    p = server.cli("keys", "export-root")
    draft = _json(p)
    assert draft["signatures"] == [] and draft["signed"]["_type"] == "root" and draft["signed"]["version"] == 2
    assert _json(server.cli("keys", "export-root", "--output", "json"))["signed"]["version"] == 2
    draft_file = workdir / "draft.json"
    draft_file.write_text(json.dumps(draft))
    root = server.api("GET", "/v1/tuf/image/root.json").json()["signed"]
    (keyid,) = root["roles"]["root"]["keyids"]
    pem = server.data_dir / "keys" / f"root-{keyid}.pem"
    # To stdout, the report to stderr.
    p = server.cli("keys", "sign-root", "--key", pem, draft_file, token=None)
    signed = _json(p)
    assert [s["keyid"] for s in signed["signatures"]] == [keyid]
    assert "1 of" in p.stderr or "1/" in p.stderr, p.stderr
    # A key that is not one of the draft's root keys: signed, but said so.
    stranger = workdir / "stranger.pem"
    stranger.write_bytes(new_key().private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                 serialization.NoEncryption()))
    p = server.cli("keys", "sign-root", "--key", stranger, draft_file, token=None)
    assert p.returncode == 0 and "not a root key" in p.stderr, (p.returncode, p.stderr)
    # Refused: not root metadata, a real number in signed, not a key, not an Ed25519 key, no file.
    targets = workdir / "targets.json"
    targets.write_text(json.dumps(server.api("GET", "/v1/tuf/image/targets.json").json()))
    real = workdir / "real.json"
    d = json.loads(json.dumps(draft))
    d["signed"]["x"] = 1.5
    real.write_text(json.dumps(d))
    garbage = workdir / "garbage.pem"
    garbage.write_text("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
    rsa_pem = workdir / "rsa.pem"
    rsa_pem.write_bytes(rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    for key, doc, what in ((pem, targets, "root"), (pem, real, "real"), (garbage, draft_file, "key"),
                           (rsa_pem, draft_file, "Ed25519"), (pem, workdir / "none.json", "none.json"),
                           (workdir / "none.pem", draft_file, "none.pem")):
        p = server.cli("keys", "sign-root", "--key", key, doc, token=None)
        assert p.returncode != 0 and p.stdout == "", (key.name, doc.name, p.returncode, p.stdout[:200])
        assert what.lower() in p.stderr.lower(), (key.name, doc.name, p.stderr)
    assert json.loads(draft_file.read_text()) == draft, "a refused sign-root changed the draft"


# --- exit codes 1 and 6 for what a server may answer --------------------------------------------------
class _Canned:
    """A tiny HTTP server answering each path with a canned (status, content type, body)."""

    def __init__(self, answers):
        canned = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_GET(self):
                status, ctype, body = canned.answers.get(self.path.split("?")[0], (404, "text/plain", b"no"))
                self.send_response(status)
                if ctype:
                    self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_POST = do_PUT = do_DELETE = do_GET

        self.answers = answers
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def test_exit_codes_for_server_failures_and_strange_answers(server):
    problem = json.dumps({"type": "about:blank", "title": "Service Unavailable", "status": 503,
                          "detail": "database is unreachable"}).encode()
    canned = _Canned({
        "/v1/devices": (503, "application/problem+json", problem),
        "/v1/tokens": (500, "application/problem+json", problem.replace(b"503", b"500")),
        "/v1/audit": (502, "text/html", b"<html>bad gateway</html>"),
        "/v1/enroll-tokens": (200, "application/json", b"this is not JSON"),
        "/v1/models": (418, "application/json", b"{}"),
    })
    try:
        for args, code, says in ((("devices", "list"), 6, "database is unreachable"), (("tokens", "list"), 6, "500"),
                                 (("audit", "list"), 6, "502"), (("enroll-tokens", "list"), 1, ""),
                                 (("models", "list"), 1, "418")):
            p = server.cli(*args, url=canned.url)
            assert p.returncode == code, (args, p.returncode, p.stderr)
            assert p.stderr.startswith("ganglion: ") and says in p.stderr, (args, p.stderr)
    finally:
        canned.close()


# --- day one: suggestions, actions on nothing, errors that name the thing, not-gangliond, whoami ------
def test_typos_get_a_suggestion_and_help_and_version_answer(server):
    for args, says in ((("devics", "list"), "did you mean 'devices'?"),
                       (("devices", "lst"), "did you mean 'list'?"),
                       (("devices", "list", "--selectr", "a=b"), "did you mean --selector?"),
                       (("whoam",), "did you mean 'whoami'?"),
                       (("help", "modles"), "did you mean 'models'?")):
        p = server.cli(*args)
        assert p.returncode == 2 and says in p.stderr, (args, p.returncode, p.stderr)
    p = server.cli("frobnicate")
    assert p.returncode == 2 and "did you mean" not in p.stderr, p.stderr
    v = _cli(server, "--version", url=False, token=None)
    assert v.returncode == 0 and re.match(r"ganglion \d+\.\d+\.\d+", v.stdout) and v.stdout.count("\n") == 1, v.stdout
    h = _cli(server, "help", "devices", "assign", url=False, token=None)
    assert h.returncode == 0 and h.stdout.startswith("Usage: ganglion devices assign"), h.stdout
    assert _cli(server, "whoami", "--help", url=False, token=None).stdout.startswith("Usage: ganglion whoami")


def test_an_action_on_nothing_fails_an_empty_list_does_not(server):
    assert publish(server, "det", b"det-1").status_code == 201
    enroll_device(server, labels={"site": "north"})
    p = server.cli("devices", "assign", "--selector", "site=nowhere", "det@1.0.0")
    assert p.returncode == 4 and "site=nowhere" in p.stderr and "nothing assigned" in p.stderr, p
    missing = str(uuid.uuid4())
    p = server.cli("devices", "events", missing)
    assert p.returncode == 4 and missing in p.stderr and p.stdout == "", p
    p = server.cli("devices", "list", "--selector", "site=nowhere")
    assert p.returncode == 0 and p.stdout.startswith("ID"), p


def test_errors_name_what_was_wrong(server):
    for v in ("1.0.0", "1.1.0"):
        assert publish(server, "det", v.encode(), meta=model_meta(v)).status_code == 201
    dev = enroll_device(server)
    missing = str(uuid.uuid4())
    for args, says in (
            (("models", "alias", "set", "dett", "prod", "1.0.0"), "no model 'dett' (HTTP 404); did you mean 'det'?"),
            (("models", "alias", "set", "det", "prod", "1.0.2"),
             "model 'det' has no version or alias '1.0.2' (HTTP 404); its newest versions: 1.1.0, 1.0.0"),
            (("models", "alias", "rm", "det", "prod"), "model 'det' has no alias 'prod'"),
            (("models", "show", "dte"), "no model 'dte' (HTTP 404); did you mean 'det'?"),
            (("models", "show", "det@1.2.0"), "model 'det' has no version or alias '1.2.0'"),
            (("devices", "assign", dev.id, "det@9.9.9"), "model 'det' has no version or alias '9.9.9'"),
            (("devices", "assign", missing, "det@1.0.0"), f"device '{missing}'"),
            (("devices", "show", missing), f"device '{missing}'"),
            (("tokens", "revoke", missing), f"API token '{missing}'"),
            (("deploy", "create", "d", "--model", "dett", "--selector", "a=b", "--follow", "1.0.0"),
             "did you mean 'det'?")):
        p = server.cli(*args)
        assert p.returncode == 4 and says in p.stderr, (args, p.returncode, p.stderr)


def test_a_url_that_is_not_gangliond(server):
    page = (b"<!DOCTYPE html><html><head><title>Welcome to nginx!</title></head><body>"
            + b"<p>lorem ipsum</p>" * 200 + b"</body></html>")
    canned = _Canned({"/v1/devices": (200, "text/html; charset=utf-8", page),
                      "/v1/models": (404, "text/html", page),
                      "/v1/tokens": (502, "text/html", page),
                      # as libmicrohttpd refuses a request line too long: HTML without a Content-Type
                      "/v1/audit": (414, None, page),
                      # as a mirror refuses an unknown path: 403 and HTML without a Content-Type
                      "/v1/status": (403, None, page)})
    try:
        for args, code in ((("devices", "list"), 8), (("models", "list"), 8), (("tokens", "list"), 6),
                           (("audit", "list"), 1), (("status",), 8)):
            p = server.cli(*args, url=canned.url)
            assert p.returncode == code, (args, p.returncode, p.stderr)
            assert "<" not in p.stderr and "lorem" not in p.stderr and "Welcome to nginx!" in p.stderr, p.stderr
            assert code != 8 or (f"{canned.url} is not gangliond" in p.stderr and "--url" in p.stderr), p.stderr
            assert code != 1 or "HTTP 414" in p.stderr, p.stderr
            assert p.stdout == ""
    finally:
        canned.close()


def test_whoami(server):
    t = server.make_token(["ci", "read"], name="ci-bot")
    me = _json(server.cli("whoami", token=t["token"], output="json"))
    assert (me["name"], sorted(me["scopes"]), me["id"]) == ("ci-bot", ["ci", "read"], t["id"]), me
    p = server.cli("whoami", token=t["token"])
    assert p.returncode == 0 and re.search(r"^Name:\s+ci-bot$", p.stdout, re.M), p.stdout
    assert re.search(r"^Scopes:\s+ci,read$", p.stdout, re.M) and re.search(r"^Expires:\s+never$", p.stdout, re.M)
    assert server.url in p.stdout and t["token"] not in p.stdout
    assert server.cli("whoami", token=None).returncode == 3


def test_keys_root_list_repo_and_o_is_the_output_format(server, workdir):
    # -o is the output format everywhere; -O FILE writes a file.
    p = subprocess.run([str(GANGLION_CLI), "--url", server.url, "--token", server.admin_token, "keys", "export-root",
                        "-o", "json"], cwd=workdir, capture_output=True, text=True, timeout=30)
    assert p.returncode == 0 and json.loads(p.stdout)["signed"]["_type"] == "root", p
    assert not (workdir / "json").exists(), "-o json wrote a file named json"
    p = server.cli("keys", "export-root", "-O", workdir / "draft.json")
    assert p.returncode == 0 and json.loads((workdir / "draft.json").read_text())["signed"]["version"] == 2, p
    # keys root: what an agent pins with --trusted-root / --trusted-director-root.
    for repo in ("image", "director"):
        out = workdir / f"{repo}-root.json"
        p = server.cli("keys", "root", "--repo", repo, "-O", out)
        assert p.returncode == 0 and str(out) in p.stdout, p
        assert json.loads(out.read_text()) == server.api("GET", f"/v1/tuf/{repo}/root.json").json()
    assert _json(server.cli("keys", "root"))["signed"]["_type"] == "root"
    assert server.cli("keys", "root", "--repo", "images").returncode == 2
    table = server.cli("keys", "list").stdout.splitlines()
    assert table[0].split()[:2] == ["REPO", "ROLE"], table
    assert {line.split()[0] for line in table[1:] if line and not line.endswith(":") and "threshold" not in line} \
        == {"image", "director"}, table


def test_push_progress_in_a_log_is_plain_lines(server, workdir):
    art = workdir / "m.onnx"
    art.write_bytes(b"\0" * 300_000)
    meta = workdir / "meta.json"
    meta.write_text(json.dumps(model_meta("1.0.0")))
    p = server.cli("models", "push", art, "--name", "prog", "--version", "1.0.0", "--meta", meta)
    assert p.returncode == 0, p.stderr
    lines = [x for x in p.stderr.splitlines() if x.startswith("uploading")]
    assert lines and re.fullmatch(r"uploading 100%  30\d\.\d kB / 30\d\.\d kB  \d+\.\d MB/s", lines[-1]), p.stderr
    assert "\r" not in p.stderr and "\033" not in p.stderr, repr(p.stderr)
    p = server.cli("models", "push", art, "--name", "prog", "--version", "1.0.1", "--meta", meta, "--no-progress")
    assert p.returncode == 0 and "uploading" not in p.stderr and "hashing" not in p.stderr, p.stderr
