"""Signals: SIGHUP re-reads the config file and applies the reloadable keys only if all of it
parses; SIGTERM lets a request in flight finish before gangliond stops."""

import signal
import socket
import threading

from ganglion_harness import artifact_files, assert_problem, model_meta, multipart, wait_for


def _post_tokens(server, size):
    # A syntactically fine body of `size` bytes: the limit, not the content, decides.
    pad = "x" * max(0, size - 60)
    return server.api("POST", "/v1/tokens", json={"name": "t", "scopes": ["read"], "pad": pad})


def test_sighup_applies_a_valid_config_and_keeps_the_old_one_when_invalid(gangliond, workdir):
    conf = workdir / "gangliond.conf"
    conf.write_text("max-body = 1M\n")
    srv = gangliond(extra_args=["--config", str(conf)])
    # 4 KiB: under 1M the body is read and refused only for its unknown field.
    assert_problem(_post_tokens(srv, 4096), 400, "unknown field")

    conf.write_text("# smaller now\nmax-body = 2K\n")
    srv.proc.send_signal(signal.SIGHUP)
    assert wait_for(lambda: _post_tokens(srv, 4096).status_code == 413, 60, 0.1), "max-body did not reload"

    # A typo: the whole file is refused and the running settings stay.
    conf.write_text("max-body = 1M\nmax-bdy = 3\n")
    srv.proc.send_signal(signal.SIGHUP)
    assert wait_for(lambda: "event=reload_failed" in srv.logfile.read_text(errors="replace"), 60, 0.1)
    assert "did you mean 'max-body'" in srv.logfile.read_text(errors="replace")
    assert_problem(_post_tokens(srv, 4096), 413)
    assert srv.api("GET", "/healthz").status_code == 200


def test_sigterm_drains_an_upload_in_flight(gangliond):
    srv = gangliond()
    body, ctype = multipart(model_meta("1.0.0"), b"m" * 200_000)
    head = (f"POST /v1/models/drain/versions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {srv.admin_token}\r\n"
            f"Content-Type: {ctype}\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode()
    s = socket.create_connection(("127.0.0.1", srv.port))
    s.sendall(head + body[:1000])
    # In flight: the artifact part has begun streaming into a temporary file.
    assert wait_for(lambda: artifact_files(srv.data_dir)[1], 60, 0.02), "the upload never started"
    # stop() sends SIGTERM and asserts a clean exit (status 0, no sanitizer report) within its timeout.
    problems = []
    stopper = threading.Thread(target=lambda: problems.extend(srv.stop(check=False) or []))
    proc = srv.proc
    stopper.start()
    assert wait_for(lambda: "event=shutdown signal=TERM" in srv.logfile.read_text(errors="replace"), 60, 0.02), \
        "no shutdown logged after SIGTERM"
    assert proc.poll() is None, "gangliond exited with a request in flight"
    s.sendall(body[1000:])
    answer = b""
    s.settimeout(60)
    while chunk := s.recv(65536):
        answer += chunk
    s.close()
    stopper.join(90)
    assert not stopper.is_alive(), "gangliond did not stop"
    assert answer.startswith(b"HTTP/1.1 201"), answer[:300]
    assert not problems, problems
    assert proc.returncode == 0
    log = srv.logfile.read_text(errors="replace")
    assert "event=shutdown signal=TERM" in log and "event=stopped" in log
    assert log.index("status=201") < log.index("event=stopped")
