#!/usr/bin/python3
"""Enrols one device through the public API (an enrollment token made with the admin token, POST
/v1/enroll, the challenge-response), checks it in once and prints two lines: its device token and
the ETag of its check-in answer. For bench/checkin_vs_nginx.sh.

usage: bench/checkin_setup.py URL ADMIN_TOKEN_FILE"""
import json
import sys
import urllib.request

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey


def call(url, path, body, token=None, want=200):
    req = urllib.request.Request(url + path, data=json.dumps(body).encode(), method="POST")
    req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", "Bearer " + token)
    with urllib.request.urlopen(req, timeout=30) as r:
        if r.status != want:
            sys.exit(f"{path}: {r.status}")
        return json.loads(r.read() or b"{}"), r.headers


def main():
    url, admin = sys.argv[1], open(sys.argv[2]).read().strip()
    enroll, _ = call(url, "/v1/enroll-tokens", {"name": "bench", "max_uses": 1}, admin, 201)
    key = Ed25519PrivateKey.generate()
    pub = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw).hex()
    dev, _ = call(url, "/v1/enroll", {"token": enroll["token"], "public_key": pub}, want=201)
    dev_id = dev["device_id"]
    ch, _ = call(url, "/v1/agent/auth/challenge", {"device_id": dev_id})
    sig = key.sign(f"ganglion-device-auth:v1:{dev_id}:{ch['nonce']}".encode()).hex()
    tok, _ = call(url, "/v1/agent/auth/token", {"device_id": dev_id, "nonce": ch["nonce"], "signature": sig})
    _, headers = call(url, "/v1/agent/checkin", {"agent_version": "bench"}, tok["token"])
    print(tok["token"])
    print(headers["ETag"])


if __name__ == "__main__":
    main()
