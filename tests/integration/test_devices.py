"""The device inventory: label selectors, cursor pagination, label edits, hostile strings."""

import time
import uuid

import pytest

from ganglion_harness import NO_TOKEN, assert_problem, enroll_device, list_all

FLEET = {
    "d1": {"site": "north", "type": "camera", "gpu": "yes"},
    "d2": {"site": "north", "type": "sensor"},
    "d3": {"site": "south", "type": "camera", "gpu": "yes"},
    "d4": {"type": "camera"},
    "d5": {"site": "east"},
}


@pytest.fixture
def fleet(server):
    """Five devices named d1..d5 with the labels in FLEET; returns {name: Device}."""
    return {name: enroll_device(server, labels=labels, name=name) for name, labels in FLEET.items()}


def _select(server, selector, **params):
    items, _ = list_all(server, "/v1/devices", params={"selector": selector, **params})
    return sorted(d["name"] for d in items)


@pytest.mark.parametrize(
    "selector, expected",
    [
        ("", ["d1", "d2", "d3", "d4", "d5"]),
        ("site=north,type=camera", ["d1"]),
        ("site==north", ["d1", "d2"]),
        ("site=north", ["d1", "d2"]),
        ("site!=south", ["d1", "d2", "d4", "d5"]),  # absent counts as "not south"
        ("gpu", ["d1", "d3"]),
        ("!gpu", ["d2", "d4", "d5"]),
        ("type=camera,!gpu", ["d4"]),
        ("site", ["d1", "d2", "d3", "d5"]),
        ("!site,!gpu", ["d4"]),
        ("site=west", []),
        ("site=North", []),  # values are case-sensitive
        ("type=camera,site!=north,gpu=yes", ["d3"]),
    ],
)
def test_label_selectors(server, fleet, selector, expected):
    assert _select(server, selector) == expected


@pytest.mark.parametrize("selector", ["=north", "site=a,,type=b", "!", "si te=north", "site!", "!site=north"])
def test_bad_selector_is_400(server, fleet, selector):
    assert_problem(server.api("GET", "/v1/devices", params={"selector": selector}), 400)


def test_pagination_returns_every_device_once_in_order(server, fleet):
    r = server.api("GET", "/v1/devices", params={"limit": 100})
    whole = [d["id"] for d in r.json()["items"]]
    assert r.json()["next_cursor"] is None
    assert sorted(whole) == sorted(d.id for d in fleet.values())

    pages = []
    params = {"limit": 2}
    while True:
        r = server.api("GET", "/v1/devices", params=params)
        assert r.status_code == 200, r.text
        b = r.json()
        pages.append([d["id"] for d in b["items"]])
        if b["next_cursor"] is None:
            break
        assert len(pages) < 10
        params["cursor"] = b["next_cursor"]
    assert [len(p) for p in pages] == [2, 2, 1], pages
    assert [i for p in pages for i in p] == whole


def test_pagination_with_selector(server, fleet):
    items, pages = list_all(server, "/v1/devices", params={"selector": "type=camera"}, limit=1)
    assert sorted(d["name"] for d in items) == ["d1", "d3", "d4"]
    assert pages in (3, 4)  # a last, empty page is allowed


def test_cursor_survives_new_devices(server, fleet):
    """A device enrolled while paging does not make the pager repeat or skip old ones."""
    r = server.api("GET", "/v1/devices", params={"limit": 2})
    seen = [d["id"] for d in r.json()["items"]]
    cursor = r.json()["next_cursor"]
    enroll_device(server, labels={"site": "late"}, name="d6")
    items, _ = list_all(server, "/v1/devices", params={"cursor": cursor, "limit": 2})
    seen += [d["id"] for d in items]
    old = {d.id for d in fleet.values()}
    assert len(seen) == len(set(seen)), "a device was returned twice"
    assert old <= set(seen), "a device was skipped"


@pytest.mark.parametrize("params", [{"limit": 0}, {"limit": 1001}, {"limit": "two"}, {"cursor": "garbage!"},
                                    {"status": "sleeping"}])
def test_bad_list_parameters_are_400(server, fleet, params):
    assert_problem(server.api("GET", "/v1/devices", params=params), 400)


def test_status_filter(server, fleet):
    assert server.api("DELETE", f"/v1/devices/{fleet['d2'].id}").status_code == 200
    assert _select(server, "", status="decommissioned") == ["d2"]
    assert _select(server, "", status="active") == ["d1", "d3", "d4", "d5"]
    assert _select(server, "site=north", status="active") == ["d1"]


SQLISH = ["'; DROP TABLE devices; --", "x' OR '1'='1", 'robert"); DELETE FROM audit_log; --', "\\x00\\'", "Zürich ☃"]


def test_sql_looking_strings_are_stored_literally(server):
    devs = []
    for i, s in enumerate(SQLISH):
        devs.append(enroll_device(server, labels={"note": s, "idx": str(i)}, name=s))
    for dev, s in zip(devs, SQLISH):
        d = server.api("GET", f"/v1/devices/{dev.id}").json()
        assert d["name"] == s
        assert d["labels"]["note"] == s
    # each is selectable by its exact value, and only it
    for dev, s in zip(devs, SQLISH):
        items, _ = list_all(server, "/v1/devices", params={"selector": f"note={s}"})
        assert [d["id"] for d in items] == [dev.id], s
    items, _ = list_all(server, "/v1/devices", params={"selector": "note!=x' OR '1'='1"})
    assert len(items) == len(SQLISH) - 1
    # the tables are all still there
    assert len(list_all(server, "/v1/devices")[0]) == len(SQLISH)
    assert server.api("GET", "/v1/audit").status_code == 200
    # and via PATCH too
    r = server.api("PATCH", f"/v1/devices/{devs[0].id}", json={"labels": {"q": "x' OR '1'='1"}, "name": "a'b"})
    assert r.status_code == 200, r.text
    assert r.json()["labels"]["q"] == "x' OR '1'='1" and r.json()["name"] == "a'b"


def test_patch_merges_and_removes_labels(server):
    dev = enroll_device(server, labels={"a": "1", "b": "2", "c": "3"}, name="before")
    r = server.api("PATCH", f"/v1/devices/{dev.id}", json={"labels": {"b": None, "c": "30", "d": "4"}})
    assert r.status_code == 200, r.text
    assert r.json()["labels"] == {"a": "1", "c": "30", "d": "4"}
    assert r.json()["name"] == "before"
    r = server.api("PATCH", f"/v1/devices/{dev.id}", json={"name": "after"})
    assert r.status_code == 200, r.text
    assert r.json()["name"] == "after"
    assert r.json()["labels"] == {"a": "1", "c": "30", "d": "4"}
    # removing a label that is not there is harmless
    r = server.api("PATCH", f"/v1/devices/{dev.id}", json={"labels": {"zzz": None}})
    assert r.status_code == 200 and r.json()["labels"] == {"a": "1", "c": "30", "d": "4"}
    d = server.api("GET", f"/v1/devices/{dev.id}").json()
    assert d["name"] == "after" and d["labels"] == {"a": "1", "c": "30", "d": "4"}
    # selectors see the new labels
    assert [x["id"] for x in list_all(server, "/v1/devices", params={"selector": "c=30,!b"})[0]] == [dev.id]


@pytest.mark.parametrize(
    "body",
    [{"labels": {"a": 1}}, {"labels": {"bad key": "x"}}, {"labels": "a=1"}, {"name": 7},
     {"colour": "red"}, {"labels": {"k": "v" * 254}}, {"labels": {"a": ["x"]}}],
    ids=["value-int", "key-space", "labels-str", "name-int", "unknown", "value-long", "value-list"],
)
def test_bad_patch_is_400_and_changes_nothing(server, body):
    dev = enroll_device(server, labels={"a": "1"}, name="keep")
    assert_problem(server.api("PATCH", f"/v1/devices/{dev.id}", json=body), 400)
    d = server.api("GET", f"/v1/devices/{dev.id}").json()
    assert d["name"] == "keep" and d["labels"] == {"a": "1"}


def test_unknown_device_is_404(server):
    missing = str(uuid.uuid4())
    assert_problem(server.api("GET", f"/v1/devices/{missing}"), 404)
    assert_problem(server.api("PATCH", f"/v1/devices/{missing}", json={"name": "x"}), 404)
    assert_problem(server.api("DELETE", f"/v1/devices/{missing}"), 404)
    # an id that is not even a UUID is not found either, never a 500
    assert_problem(server.api("GET", "/v1/devices/not-a-uuid"), 404)


def test_decommission(server):
    dev = enroll_device(server, labels={"site": "x"})
    r = server.api("DELETE", f"/v1/devices/{dev.id}")
    assert r.status_code == 200, r.text
    d = r.json()
    assert d["id"] == dev.id and d["status"] == "decommissioned" and d["decommissioned_at"]
    g = server.api("GET", f"/v1/devices/{dev.id}").json()
    assert g["status"] == "decommissioned" and g["decommissioned_at"] == d["decommissioned_at"]
    # decommissioning again is idempotent: it does not un-decommission or move the date
    r = server.api("DELETE", f"/v1/devices/{dev.id}")
    assert r.status_code == 200 and r.json()["decommissioned_at"] == d["decommissioned_at"], r.text
    g = server.api("GET", f"/v1/devices/{dev.id}").json()
    assert g["status"] == "decommissioned" and g["decommissioned_at"] == d["decommissioned_at"]


def test_decommission_again_answers_at_once(gangliond):
    """Decommissioning a decommissioned device tells no replica anything: it does not wait for
    acknowledgements that cannot come (it waited 2 s once the first one's had been forgotten, as
    after a restart)."""
    server = gangliond()
    dev = enroll_device(server)
    assert server.api("DELETE", f"/v1/devices/{dev.id}").status_code == 200
    server.stop()
    server.start()
    t0 = time.monotonic()
    r = server.api("DELETE", f"/v1/devices/{dev.id}")
    took = time.monotonic() - t0
    assert r.status_code == 200 and r.json()["status"] == "decommissioned", r.text
    assert took < 1.0, took


def test_inventory_needs_a_token(server, fleet):
    assert_problem(server.api("GET", "/v1/devices", token=NO_TOKEN), 401)
    assert_problem(server.api("GET", f"/v1/devices/{fleet['d1'].id}", token=NO_TOKEN), 401)
