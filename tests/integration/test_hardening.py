"""Hostile input that once could hurt the server: bytes that are not UTF-8 in error messages,
bodies from clients without credentials, and paths that try to forge log lines."""

import socket

from ganglion_harness import NO_TOKEN, assert_problem, wait_for


def test_a_field_name_cut_inside_a_character_gets_a_clean_400(server):
    # 99 ASCII letters then "é": the error message cuts the name at 100 bytes, inside the "é".
    body = ('{"' + "a" * 99 + '\u00e9":1}').encode()
    r = server.api("POST", "/v1/agent/auth/challenge", token=NO_TOKEN, data=body,
                   headers={"Content-Type": "application/json"})
    assert_problem(r, 400, "unknown field")
    assert server.api("GET", "/healthz").status_code == 200


def test_selector_bytes_that_are_not_utf8_are_refused(server):
    r = server.api("GET", "/v1/devices?selector=site%3D%C3")
    assert_problem(r, 400, "UTF-8")


def test_unauthenticated_bodies_are_refused_before_they_are_read(server):
    # A 900 KiB body (under max-body) without credentials: 401 at once, not after the upload.
    s = socket.create_connection(("127.0.0.1", server.port))
    s.sendall(b"POST /v1/enroll-tokens HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
              b"Content-Length: 921600\r\n\r\n")
    s.settimeout(5)
    answer = s.recv(4096)
    s.close()
    assert answer.startswith(b"HTTP/1.1 401"), answer[:200]


def test_paths_cannot_forge_log_lines(server):
    r = server.api("GET", "/healthz%0Aevent=forged%20level=error")
    assert_problem(r, 404, "no such endpoint")
    rid = r.headers["X-Request-Id"]
    # The request line is written when libmicrohttpd completes the request, after the answer
    # has been sent: wait for it rather than read the log too early (and pass vacuously).
    def request_lines():
        return [l for l in server.log(limit=1 << 22).splitlines() if f"req={rid}" in l and "event=request" in l]
    assert wait_for(request_lines, 30), f"no request line for {rid} within 30 s\n{server.log()[-3000:]}"
    (line,) = request_lines()
    assert "status=404" in line and "method=GET" in line, line
    log = server.log(limit=1 << 22).splitlines()
    assert not any(l.startswith("event=forged") or " event=forged" in l.split(" path=")[0] for l in log), line
    forged = [l for l in log if "event=forged" in l]
    assert forged == [line], forged
    # The newline arrived as a byte of the path: it stays inside that one field.
    path_field = line.split(" path=", 1)[1].split(" route=", 1)[0]
    assert "event=forged" in path_field and "\n" not in path_field, line
