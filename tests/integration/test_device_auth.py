"""Device challenge-response: a device proves it holds its enrolled key and gets a short-lived
token that opens /v1/agent/* and nothing else."""

import re
import time
import uuid

import pytest

from ganglion_harness import NO_TOKEN, assert_problem, enroll_device, new_key


def test_challenge_response_gives_a_device_token(server):
    dev = enroll_device(server, labels={"site": "north"}, name="edge-1")
    r = dev.challenge(server)
    assert r.status_code == 200, r.text
    ch = r.json()
    assert re.fullmatch(r"[0-9a-f]{64}", ch["nonce"]), ch
    assert ch["expires_at"].endswith("Z"), ch

    r = dev.exchange(server, ch["nonce"])
    assert r.status_code == 200, r.text
    tok = r.json()
    assert tok["token"].startswith("gnd_"), tok

    r = server.api("GET", "/v1/agent/self", token=tok["token"])
    assert r.status_code == 200, r.text
    me = r.json()
    assert me["id"] == dev.id
    assert me["name"] == "edge-1"
    assert me["labels"] == {"site": "north"}
    assert me["status"] == "active"


def test_device_token_opens_only_the_agent_api(server):
    dev = enroll_device(server)
    tok = dev.authenticate(server)
    for method, path, body in [
        ("GET", "/v1/devices", None),
        ("GET", f"/v1/devices/{dev.id}", None),
        ("PATCH", f"/v1/devices/{dev.id}", {"name": "pwned"}),
        ("DELETE", f"/v1/devices/{dev.id}", None),
        ("POST", "/v1/enroll-tokens", {}),
        ("GET", "/v1/tokens", None),
        ("GET", "/v1/audit", None),
    ]:
        r = server.api(method, path, token=tok, json=body)
        assert_problem(r, 403, "device tokens only open")
    d = server.api("GET", f"/v1/devices/{dev.id}").json()
    assert d["status"] == "active" and d["name"] != "pwned"


def test_api_token_does_not_open_agent_api(server):
    for tok in (server.admin_token, server.make_token(["read"])["token"]):
        assert_problem(server.api("GET", "/v1/agent/self", token=tok), 403, "device token")
    assert_problem(server.api("GET", "/v1/agent/self", token=NO_TOKEN), 401)
    assert_problem(server.api("GET", "/v1/agent/self", token="gnd_" + "0" * 40), 401)


def test_nonce_is_single_use(server):
    dev = enroll_device(server)
    nonce = dev.challenge(server).json()["nonce"]
    sig = dev.sign(nonce)
    assert dev.exchange(server, nonce, sig).status_code == 200
    assert_problem(dev.exchange(server, nonce, sig), 401)


def test_wrong_signature_is_401(server):
    dev = enroll_device(server)
    nonce = dev.challenge(server).json()["nonce"]
    # signed by a key that is not the device's
    assert_problem(dev.exchange(server, nonce, dev.sign(nonce, key=new_key())), 401)
    # the device's key, but over another message
    nonce = dev.challenge(server).json()["nonce"]
    bad = dev.key.sign(f"ganglion-device-auth:v2:{dev.id}:{nonce}".encode()).hex()
    assert_problem(dev.exchange(server, nonce, bad), 401)
    # a flipped bit
    nonce = dev.challenge(server).json()["nonce"]
    sig = bytearray(bytes.fromhex(dev.sign(nonce)))
    sig[5] ^= 1
    assert_problem(dev.exchange(server, nonce, sig.hex()), 401)
    # an unknown nonce
    assert_problem(dev.exchange(server, "ab" * 32), 401)


def test_one_device_cannot_use_anothers_nonce(server):
    a = enroll_device(server)
    b = enroll_device(server)
    nonce_b = b.challenge(server).json()["nonce"]
    # a signs b's nonce with its own id: the nonce was issued to b
    assert_problem(a.exchange(server, nonce_b), 401)
    # a signs for b's id: wrong key for b
    assert_problem(b.exchange(server, nonce_b, a.sign(nonce_b, device_id=b.id)), 401)
    # a failed attempt burns the nonce: b itself cannot finish it now, and asks for another
    assert_problem(b.exchange(server, nonce_b), 401)
    me = server.api("GET", "/v1/agent/self", token=b.authenticate(server)).json()
    assert me["id"] == b.id


@pytest.mark.parametrize("sig", ["", "zz" * 64, "ab" * 63, 7])
def test_malformed_signature_is_refused(server, sig):
    dev = enroll_device(server)
    nonce = dev.challenge(server).json()["nonce"]
    assert_problem(dev.exchange(server, nonce, sig), 400)


def test_challenge_for_unknown_device_is_404(server):
    r = server.api("POST", "/v1/agent/auth/challenge", token=NO_TOKEN, json={"device_id": str(uuid.uuid4())})
    assert_problem(r, 404)


@pytest.mark.slow
def test_expired_nonce_is_401(gangliond):
    s = gangliond(extra_args=["--challenge-ttl", "5"])  # the shortest it accepts
    dev = enroll_device(s)
    # a nonce used at once works with this short ttl...
    assert dev.exchange(s, dev.challenge(s).json()["nonce"]).status_code == 200
    # ...one used after it expired does not
    nonce = dev.challenge(s).json()["nonce"]
    time.sleep(6.2)
    assert_problem(dev.exchange(s, nonce), 401)


def test_a_device_id_in_upper_case_gets_a_token_that_revocation_still_reaches(server):
    """PostgreSQL takes a uuid in either case; revocations name it in lower case. A token asked for
    with the id in upper case names the device in lower case, so decommissioning refuses it."""
    dev = enroll_device(server)
    upper = dev.id.upper()
    r = server.api("POST", "/v1/agent/auth/challenge", token=NO_TOKEN, json={"device_id": upper})
    assert r.status_code == 200, r.text
    nonce = r.json()["nonce"]
    r = dev.exchange(server, nonce, signature=dev.sign(nonce, device_id=upper), device_id=upper)
    assert r.status_code == 200, r.text
    tok = r.json()["token"]
    assert dev.id in tok and upper not in tok, tok
    assert server.api("GET", "/v1/agent/self", token=tok).status_code == 200
    # A token naming the device in upper case (as this server minted before) is refused outright.
    forged_case = tok.replace(dev.id, upper)
    assert_problem(server.api("GET", "/v1/agent/self", token=forged_case), 401)
    assert server.api("DELETE", f"/v1/devices/{dev.id}").status_code == 200
    assert_problem(server.api("GET", "/v1/agent/self", token=tok), 401)


def test_decommissioned_device_is_locked_out(server):
    dev = enroll_device(server)
    tok = dev.authenticate(server)
    assert server.api("GET", "/v1/agent/self", token=tok).status_code == 200
    open_nonce = dev.challenge(server).json()["nonce"]

    r = server.api("DELETE", f"/v1/devices/{dev.id}")
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "decommissioned"
    assert r.json()["decommissioned_at"] is not None

    # its token stops working at once
    assert_problem(server.api("GET", "/v1/agent/self", token=tok), 401)
    # it can get no new challenge...
    assert_problem(dev.challenge(server), 403)
    # ...and a challenge it held before is no good either
    assert_problem(dev.exchange(server, open_nonce), 403)
    # another device is unaffected
    other = enroll_device(server)
    assert server.api("GET", "/v1/agent/self", token=other.authenticate(server)).status_code == 200
