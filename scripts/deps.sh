#!/usr/bin/env bash
# Installs the Debian 12 packages Ganglion needs to build, test and run, skipping those present.
# Usage: scripts/deps.sh [build|test|demo]   (test installs everything)
set -euo pipefail

BUILD_PKGS=(build-essential g++ autoconf automake pkg-config libopencv-dnn-dev ocl-icd-opencl-dev
	libmicrohttpd-dev libpq-dev libjansson-dev libssl-dev libgit2-dev libcurl4-openssl-dev libcmocka-dev
	clang-format)
RUN_PKGS=(postgresql postgresql-client curl openssl pocl-opencl-icd)
# The demo and the tests generate small ONNX models with numpy references (tests/models/make_models.py).
MODEL_PKGS=(python3 python3-onnx python3-numpy)
TEST_PKGS=(python3-pytest python3-requests python3-yaml python3-cryptography python3-securesystemslib)
# The Debian packages (make deb, scripts/test-packages.sh): debhelper 13 with dh-sequence-installsysusers,
# lintian; systemd for systemd-analyze and systemd-sysusers/-tmpfiles (the packages' postinst); man-db
# and procps for the checks.
PKG_PKGS=(debhelper dpkg-dev lintian systemd man-db procps)

want=("${BUILD_PKGS[@]}" "${RUN_PKGS[@]}")
case "${1:-test}" in
test) want+=("${MODEL_PKGS[@]}" "${TEST_PKGS[@]}" "${PKG_PKGS[@]}") ;;
demo) want+=("${MODEL_PKGS[@]}") ;;
esac

missing=()
for p in "${want[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "deps: installing ${missing[*]}"
SUDO=
if [ "$(id -u)" -ne 0 ]; then
	command -v sudo >/dev/null || { echo "deps: missing packages and not root: ${missing[*]}" >&2; exit 1; }
	SUDO=sudo
fi
export DEBIAN_FRONTEND=noninteractive
# Installing the postgresql package must not leave a system cluster running that we never use.
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
