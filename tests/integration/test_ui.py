"""The web dashboard (/ui/, docs/UI.md) in a real browser: Debian's chromium driven by
playwright-core (scripts/ui-test/driver.js, pinned in its package-lock.json), against a real
gangliond and a simulated fleet that speaks the real protocol. Screenshots of every page go to
$GANGLION_BUILDDIR/ui-screenshots/ for a reviewer to look at."""

import hashlib
import json
import os
import shutil
import subprocess
import threading
import time

import numpy as np
import pytest

from ganglion_harness import BUILDDIR, SRCDIR, NO_TOKEN, assert_problem, list_all, wait_for
from test_rollouts import SimDevice, create, fleet_checkin, publish_versions, rollout_of
from test_telemetry import _fleet, _now_window, _post, _window

CHROMIUM = os.environ.get("GANGLION_CHROMIUM", "/usr/bin/chromium")
DRIVER = SRCDIR / "scripts" / "ui-test" / "driver.js"
SHOTS = BUILDDIR / "ui-screenshots"
XSS_NAME = "<img src=x onerror=alert(1)>"
XSS_LABEL = "<script>alert(2)</script>"


class Browser:
    """One chromium page behind scripts/ui-test/driver.js; call(op, **args) runs one command."""

    def __init__(self, origin):
        # Missing pieces fail the test (CI installs them with scripts/deps.sh): never a skip.
        assert shutil.which("node"), "node is missing (scripts/deps.sh installs it)"
        assert os.access(CHROMIUM, os.X_OK), f"{CHROMIUM} is missing (scripts/deps.sh installs chromium)"
        assert (DRIVER.parent / "node_modules" / "playwright-core").is_dir(), \
            "playwright-core is missing: run scripts/deps.sh (npm ci in scripts/ui-test)"
        self.proc = subprocess.Popen(["node", str(DRIVER)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, cwd=DRIVER.parent)
        self.stderr = []
        threading.Thread(target=lambda: self.stderr.extend(self.proc.stderr), daemon=True).start()
        self.seq = 0
        self.origin = origin
        self.call("launch", origin=origin, timeout=60)

    def call(self, op, timeout=30, **args):
        self.seq += 1
        self.proc.stdin.write(json.dumps(dict(args, id=self.seq, op=op)) + "\n")
        self.proc.stdin.flush()
        result = {}

        def read():
            result["line"] = self.proc.stdout.readline()
        t = threading.Thread(target=read, daemon=True)
        t.start()
        t.join(timeout)
        assert "line" in result, f"browser: {op} gave no answer in {timeout} s; {''.join(self.stderr)[-2000:]}"
        assert result["line"], f"browser driver died: {''.join(self.stderr)[-2000:]}"
        answer = json.loads(result["line"])
        assert answer["id"] == self.seq, answer
        if not answer["ok"] and op not in ("launch", "screenshot", "evaluate"):
            # What the page showed, for the failure's message and a screenshot to look at.
            shown = self.call("evaluate", expression="document.body.innerText")
            self.shot(f"failed-{self.seq}-{op}")
            raise AssertionError(f"browser: {op} {args}: {answer['error']}\npage:\n{shown[:3000]}")
        assert answer["ok"], f"browser: {op} {args}: {answer['error']}"
        return answer["value"]

    def goto(self, fragment):
        return self.call("goto", url=f"{self.origin}/ui/{fragment}")

    def sign_in(self, token):
        self.goto("")
        self.call("fill", selector="#token", value=token)
        self.call("click", selector="#signin-form button[type=submit]")
        self.call("wait", selector="#who-name", hasText="Signed in as")

    def sign_out(self):
        self.call("click", selector="#sign-out")
        self.call("wait", selector="#token")

    def shot(self, name):
        SHOTS.mkdir(parents=True, exist_ok=True)
        return self.call("screenshot", dir=str(SHOTS), name=name)

    def events(self):
        return self.call("events")

    def close(self):
        try:
            self.proc.stdin.close()
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def browser():
    opened = []

    def make(server):
        b = Browser(server.url)
        opened.append(b)
        return b
    yield make
    for b in opened:
        b.close()


def test_assets_are_served_with_strict_headers_and_etags(server):
    s = server.session
    r = s.get(server.url + "/ui", allow_redirects=False)
    assert r.status_code == 200 and r.content == (SRCDIR / "ui" / "index.html").read_bytes(), r.headers
    r = s.get(server.url + "/ui/")
    assert r.status_code == 200 and r.headers["Content-Type"] == "text/html; charset=utf-8"
    assert r.content == (SRCDIR / "ui" / "index.html").read_bytes()
    csp = r.headers["Content-Security-Policy"]
    assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp and "unsafe-inline" not in csp
    assert "script-src 'self'" in csp and "style-src 'self'" in csp
    assert r.headers["X-Content-Type-Options"] == "nosniff" and r.headers["X-Frame-Options"] == "DENY"
    assert r.headers["Cache-Control"] == "no-cache"
    for name, ctype in (("app.js", "text/javascript; charset=utf-8"), ("app.css", "text/css; charset=utf-8")):
        r = s.get(f"{server.url}/ui/{name}")
        assert r.status_code == 200 and r.headers["Content-Type"] == ctype
        assert r.content == (SRCDIR / "ui" / name).read_bytes()
        etag = r.headers["ETag"]
        r = s.get(f"{server.url}/ui/{name}", headers={"If-None-Match": etag})
        assert r.status_code == 304 and r.content == b"" and r.headers["ETag"] == etag
        r = s.get(f"{server.url}/ui/{name}", headers={"If-None-Match": '"0000", W/' + etag})
        assert r.status_code == 304
        r = s.get(f"{server.url}/ui/{name}", headers={"If-None-Match": '"00000000000000000000000000000000"'})
        assert r.status_code == 200 and r.content
    for bad in ("nothing.js", "index.html%00.js", ".hidden", "APP.JS"):
        r = s.get(f"{server.url}/ui/{bad}")
        assert_problem(r, 404, "no such file")
        assert r.headers["Content-Security-Policy"] == csp
    # Only the embedded files exist: an escaped path goes nowhere.
    for bad in ("%2e%2e%2fgangliond.conf", "%2e%2e/admin.token", "..%2f..%2fetc%2fpasswd"):
        assert_problem(s.get(f"{server.url}/ui/{bad}"), 404)
    assert_problem(server.api("GET", "/ui/app.js/x", token=NO_TOKEN), 404, "no such endpoint")
    assert_problem(server.api("POST", "/ui/app.js", token=NO_TOKEN, json={}), 405)
    # The JSON answers the dashboard polls carry an ETag and are 304 while unchanged.
    r = server.api("GET", "/v1/status")
    etag = r.headers["ETag"]
    assert r.status_code == 200 and etag.startswith('W/"')
    r = server.api("GET", "/v1/status", headers={"If-None-Match": etag})
    assert r.status_code == 304 and r.content == b""
    assert server.api("GET", "/v1/status", headers={"If-None-Match": f'"x", {etag[2:]}'}).status_code == 304
    server.make_enroll_token()  # unrelated: the answer is the same
    assert server.api("GET", "/v1/status", headers={"If-None-Match": etag}).status_code == 304
    from ganglion_harness import enroll_device
    enroll_device(server)
    r = server.api("GET", "/v1/status", headers={"If-None-Match": etag})
    assert r.status_code == 200 and r.headers["ETag"] != etag and r.json()["devices"]["active"] == 1
    # Refusals carry no ETag; other methods are not cached.
    assert "ETag" not in server.api("GET", "/v1/status", token="gna_nope").headers


def test_embedding_refuses_what_it_could_not_serve_right(workdir):
    """scripts/embed-ui.sh: each file with its type and a hash of its bytes as ETag; an empty file,
    an extension without a known Content-Type, or a name that is not a plain path segment stop the
    build."""
    def embed(*files):
        return subprocess.run(["sh", str(SRCDIR / "scripts" / "embed-ui.sh"), *map(str, files)],
                              capture_output=True, text=True, timeout=30)
    good = workdir / "a-b_1.js"
    good.write_bytes(b"x\x00\xff\"\\")
    p = embed(good)
    assert p.returncode == 0, p.stderr
    etag = hashlib.sha256(good.read_bytes()).hexdigest()[:32]
    assert '{"a-b_1.js", "text/javascript; charset=utf-8", "\\"%s\\"", ui_asset_0, sizeof(ui_asset_0)}' % etag \
        in p.stdout, p.stdout
    assert "0x78, 0x00, 0xff, 0x22, 0x5c," in p.stdout
    for name, data, why in (("empty.css", b"", "empty"), ("tool.exe", b"MZ", "no Content-Type"),
                            ("a b.js", b"1", "file name"), (".x.js", b"1", "file name")):
        f = workdir / name
        f.write_bytes(data)
        p = embed(good, f)
        assert p.returncode != 0 and why in p.stderr, (name, p.returncode, p.stderr)


STRATEGY = {"stages": [{"percent": 25, "bake": 1}, {"percent": 50, "bake": 3600}, {"percent": 100, "bake": 0}],
            "gates": {"max_failed": 0, "min_healthy": 1}}


def _zoom_fits(b, name):
    """At 200 % zoom (a 640-pixel-wide page in CSS pixels), nothing makes the page scroll sideways."""
    b.call("zoom", width=640, height=900)
    time.sleep(0.2)
    width = b.call("evaluate", expression="document.documentElement.scrollWidth")
    b.shot(f"{name}-zoom200")
    b.call("zoom", width=1280, height=900)
    return width <= 640


def test_fleet_rollout_pause_and_scopes_in_the_browser(gangliond, browser):
    server = gangliond(extra_args=["--rollout-interval", "1s"])
    publish_versions(server, "1.0.0", "2.0.0")
    assert server.api("PUT", "/v1/models/det/aliases/production", json={"version": "1.0.0"}).status_code == 200
    fleet = [SimDevice(server, {"site": "north", "tier": "lab" if i % 2 else "prod"}, name=f"cam-{i}")
             for i in range(8)]
    evil = SimDevice(server, {"site": "south", "note": XSS_LABEL}, name=XSS_NAME)
    fleet.append(evil)
    create(server, selector="site", strategy=STRATEGY)
    def all_report():
        fleet_checkin(fleet)
        status = server.api("GET", "/v1/status").json()
        return status["models"] and status["models"][0]["versions"][0]["running"] == len(fleet)
    assert wait_for(all_report, timeout=30, interval=0.2), server.api("GET", "/v1/status").json()
    read = server.make_token(["read"], name="viewer")["token"]
    operator = server.make_token(["operator"], name="oncall")["token"]

    b = browser(server)
    # A wrong token is refused on the sign-in form.
    b.goto("")
    b.call("fill", selector="#token", value="gna_not-a-token")
    b.call("click", selector="#signin-form button[type=submit]")
    b.call("wait", selector="#signin-error", hasText="not valid")

    b.sign_in(operator)
    # Fleet: every device with what it runs, by site; the injected markup is text.
    b.call("wait", selector="h2", hasText="site: north (8)")
    rows = b.call("texts", selector="#view tbody tr")
    assert len(rows) == 9, rows
    assert all("det 1.0.0" in r for r in rows), rows
    names = b.call("texts", selector="#view tbody tr td:first-child a")
    assert XSS_NAME in names and "cam-0" in names, names
    assert b.call("count", selector="#view img") == 0 and b.call("count", selector="#view script") == 0
    assert any(f"note={XSS_LABEL}" in r for r in rows), rows
    assert _zoom_fits(b, "fleet")
    b.shot("fleet")
    # The selector box asks the server: a filter and a bad selector.
    b.call("fill", selector="#selector", value="tier=lab")
    b.call("click", selector="form.filter button")
    b.call("wait", selector="h2", hasText="site: north (4)")
    assert b.call("count", selector="#view tbody tr") == 4
    b.call("fill", selector="#selector", value="site=a,,tier=b")
    b.call("click", selector="form.filter button")
    b.call("wait", selector="#view [role=alert]")

    # The device page of the one with markup in its name.
    b.goto(f"#/device/{evil.dev.id}")
    b.call("wait", selector="#view h1", hasText=XSS_NAME)
    b.call("wait", selector="#view td", hasText="1.0.0")
    b.shot("device")

    # A rollout: its stages advance on the page without a reload.
    assert server.api("PUT", "/v1/models/det/aliases/production", json={"version": "2.0.0"}).status_code == 200
    rollout = wait_for(lambda: rollout_of(server, "cams"), timeout=30)
    assert rollout, "no rollout started"
    b.goto("#/rollouts")
    b.call("wait", selector=f"[data-rollout='{rollout['id']}'] li[data-stage='0']")
    assert b.call("text", selector="li[data-stage='0']").find("passed") < 0
    marker = b.call("evaluate", expression="window.__same_page = 1")
    assert marker == 1

    def stage_passed():
        fleet_checkin(fleet)
        r = rollout_of(server, "cams")
        return r["stage"] >= 1 and r["state"] == "running"
    assert wait_for(stage_passed, timeout=60, interval=0.3), rollout_of(server, "cams")
    b.call("wait", selector="li[data-stage='0'][data-state='passed']", timeout=15000)
    assert b.call("evaluate", expression="window.__same_page") == 1, "the page was reloaded"
    b.shot("rollouts")
    b.call("click", selector=f"[data-rollout='{rollout['id']}'] h2 a")
    b.call("wait", selector="#view h2", hasText="Canary and control")
    b.call("wait", selector="#view td", hasText="max_failed_share")
    # No telemetry from this fleet: the judgement says so rather than passing.
    b.call("wait", selector="#view h2", hasText="Telemetry judgement")
    b.call("wait", selector="#view .badge", hasText="inconclusive")
    b.shot("rollout")

    # Pause from the page: a confirmation first, with the focus on Cancel; Escape (the keyboard's
    # cancel) does nothing, then Confirm pauses it on the server.
    b.call("click", selector="[data-action=pause]")
    b.call("wait", selector="#confirm[open]")
    assert b.call("evaluate", expression="document.activeElement.id") == "confirm-cancel"
    b.call("press", key="Escape")
    b.call("waitGone", selector="#confirm[open]")
    time.sleep(0.5)
    assert rollout_of(server, "cams")["state"] == "running"
    b.call("click", selector="[data-action=pause]")
    b.call("click", selector="#confirm-ok")
    assert wait_for(lambda: rollout_of(server, "cams")["state"] == "paused", timeout=30), rollout_of(server, "cams")
    b.call("wait", selector="[data-action=resume]")
    assert b.call("count", selector="[data-action=pause]") == 0
    audit = list_all(server, "/v1/audit", params={"action": "rollout.pause"})[0]
    assert [e["actor"] for e in audit] == ["token:oncall"], audit

    # A read-only token: no buttons, and the server refuses the action it could still try.
    b.sign_out()
    b.sign_in(read)
    b.goto(f"#/rollout/{rollout['id']}")
    b.call("wait", selector="#view h2", hasText="Canary and control")
    assert b.call("count", selector="[data-action]") == 0
    code = b.call("evaluate", expression=(
        "fetch('/v1/rollouts/%s/resume', {method: 'POST', headers: {Authorization: 'Bearer ' + "
        "sessionStorage.getItem('ganglion.token')}}).then(r => r.status)" % rollout["id"]))
    assert code == 403
    assert rollout_of(server, "cams")["state"] == "paused"

    # Models: versions, aliases, digests and sizes, and who runs what.
    b.goto("#/models")
    b.call("wait", selector="#view a", hasText="det")
    b.shot("models")
    b.goto("#/model/det")
    digest = server.api("GET", "/v1/models/det/versions/2.0.0").json()["artifact"]["sha256"]
    b.call("wait", selector="#view code", hasText=digest)
    assert "production" in b.call("text", selector="#view tbody tr:first-child")
    b.call("wait", selector="#view h2", hasText="Devices running it")
    running = b.call("texts", selector="#view ul.labels li a")
    assert sorted(running) == sorted(d.dev.name for d in fleet), running
    b.shot("model")

    # Nothing the page did ran injected script or broke a policy.
    events = b.events()
    assert not [e for e in events if e["kind"] in ("dialog", "pageerror", "foreign-request")], events
    assert not [e for e in events if e["kind"] == "console" and "Content Security Policy" in e["text"]], events
    assert b.call("evaluate", expression="document.cookie") == ""


def test_a_drift_alert_shows_on_the_drift_page(gangliond, browser):
    server = gangliond(extra_args=["--alert-interval", "1s"])
    fleet = _fleet(server, n_devices=4, sites=("north", "south"))
    rule = {"name": "x0-shift", "model": "cam", "feature": "x0", "threshold": 0.25, "min_samples": 500,
            "windows": 2, "group_by": "site"}
    assert server.api("POST", "/v1/alert-rules", json=rule).status_code == 201
    rng = np.random.default_rng(15)
    # Two windows, the same two for every device even if a window boundary passes meanwhile.
    starts = {k: _now_window(k) for k in (3, 2)}
    for k in (3, 2):
        for dev, tok in fleet:
            mu = 1.5 if dev.labels["site"] == "north" else 0.0
            w = _window(starts[k], rng.normal(mu, 1.0, 300), classes=rng.choice(["0", "1"], 50))
            assert _post(server, tok, [w]).status_code == 200

    b = browser(server)
    b.sign_in(server.admin_token)
    b.goto("#/drift?model=cam&version=1.0.0&since=1h&by=site")
    b.call("wait", selector="#view h3", hasText="site: north")
    b.call("wait", selector="figure[data-feature='input:x0'] svg rect")
    # The alert is raised by the alerts job; the page shows it when it opens, without a reload.
    b.call("wait", selector="#view td", hasText="x0-shift", timeout=30000)
    row = b.call("text", selector="#view tbody tr:first-child")
    assert "north" in row and "input:x0" in row, row
    captions = b.call("texts", selector="figcaption")
    assert any(c.startswith("input:x0") and "PSI" in c for c in captions), captions
    # PSI over time, one line per site: north's points are far above south's.
    b.call("wait", selector="figure[data-chart='PSI of input:x0'] svg")
    label = b.call("evaluate", expression="document.querySelector(\"figure[data-chart='PSI of input:x0'] svg\")"
                                          ".getAttribute('aria-label')")
    series = dict(part.split(": ", 1) for part in label.split(" — ", 1)[1].split("; ") if not part.startswith("limit"))
    assert set(series) == {"north", "south"}, label
    north = [float(v) for v in series["north"].split(", ") if v != "–"]
    south = [float(v) for v in series["south"].split(", ") if v != "–"]
    assert north and south and min(north) > 0.25 > max(south), label
    assert _zoom_fits(b, "drift")
    b.shot("drift")
    # A shifted device's own windows on its page, each with its largest drift.
    north = next(dev for dev, _ in fleet if dev.labels["site"] == "north")
    b.goto(f"#/device/{north.id}")
    b.call("wait", selector="#view h2", hasText="Telemetry (last windows)")
    rows = b.call("texts", selector="section[aria-label='Telemetry'] tbody tr")
    assert len(rows) == 2 and all("cam 1.0.0" in r and "input:x0" in r for r in rows), rows
    b.shot("device-telemetry")
    assert not [e for e in b.events() if e["kind"] in ("dialog", "pageerror", "foreign-request")]
