"""State lives in PostgreSQL: it survives a restart, and several gangliond processes can serve
one database side by side."""

from ganglion_harness import NO_TOKEN, assert_problem, enroll_device, list_all, new_key, public_hex


def test_data_survives_restart(gangliond, db):
    first = gangliond()
    admin = first.admin_token
    assert admin
    dev = enroll_device(first, labels={"site": "north"}, name="survivor")
    reader = first.make_token(["read"], name="reader")
    revoked = first.make_token(["read"], name="gone")
    assert first.api("DELETE", f"/v1/tokens/{revoked['id']}").status_code == 204
    first.stop()  # asserts a clean exit

    second = gangliond(data_dir=first.data_dir, admin_token=admin)
    assert (first.data_dir / "admin.token").read_text().strip() == admin, "admin.token changed on restart"
    r = second.api("GET", f"/v1/devices/{dev.id}")
    assert r.status_code == 200, r.text
    assert r.json()["name"] == "survivor" and r.json()["labels"] == {"site": "north"}
    assert second.api("GET", "/v1/devices", token=reader["token"]).status_code == 200
    assert_problem(second.api("GET", "/v1/devices", token=revoked["token"]), 401)
    # the device's key still proves who it is
    tok = dev.authenticate(second)
    assert second.api("GET", "/v1/agent/self", token=tok).json()["id"] == dev.id
    # no second admin token was minted
    names = [t["name"] for t in second.api("GET", "/v1/tokens").json()["items"]]
    assert len(names) == 3, names


def test_device_token_survives_restart(gangliond):
    first = gangliond()
    dev = enroll_device(first)
    tok = dev.authenticate(first)
    first.stop()
    second = gangliond(data_dir=first.data_dir, admin_token=first.admin_token)
    assert second.api("GET", "/v1/agent/self", token=tok).status_code == 200


def test_two_servers_share_one_database(gangliond, db):
    a = gangliond()
    b = gangliond(admin_token=a.admin_token)  # its own data dir and port
    assert a.port != b.port and a.data_dir != b.data_dir
    assert not (b.data_dir / "admin.token").exists(), "the second server minted another admin token"
    assert (a.data_dir / "admin.token").read_text().strip() == a.admin_token

    # enroll via a, read via b, and the other way round
    et = a.make_enroll_token(labels={"site": "north"}, max_uses=3)
    d1 = enroll_device(a, enroll_token=et["token"], name="via-a")
    d2 = enroll_device(b, enroll_token=et["token"], name="via-b")
    for s in (a, b):
        items, _ = list_all(s, "/v1/devices", params={"selector": "site=north"})
        assert sorted(d["name"] for d in items) == ["via-a", "via-b"]
    # the token's use count is shared: its third use works, the fourth fails on either
    enroll_device(b, enroll_token=et["token"])
    assert_problem(a.api("POST", "/v1/enroll", token=NO_TOKEN,
                         json={"token": et["token"], "public_key": public_hex(new_key())}), 401)

    # a challenge issued by one can be answered at the other (a load balancer may switch)
    nonce = d1.challenge(a).json()["nonce"]
    r = d1.exchange(b, nonce)
    assert r.status_code == 200, r.text
    assert a.api("GET", "/v1/agent/self", token=r.json()["token"]).json()["id"] == d1.id
    # and it is still single-use across both
    assert_problem(d1.exchange(a, nonce), 401)

    # revocation on one is seen by the other at once
    t = b.make_token(["read"])
    assert a.api("GET", "/v1/devices", token=t["token"]).status_code == 200
    assert a.api("DELETE", f"/v1/tokens/{t['id']}").status_code == 204
    assert_problem(b.api("GET", "/v1/devices", token=t["token"]), 401)

    # decommission via b locks the device out via a
    tok = d2.authenticate(a)
    assert b.api("DELETE", f"/v1/devices/{d2.id}").status_code == 200
    assert_problem(a.api("GET", "/v1/agent/self", token=tok), 401)
    assert_problem(d2.challenge(a), 403)
