#!/usr/bin/env bash
# Installs the Debian 12 packages Ganglion needs to build, test and run, skipping those present.
# Usage: scripts/deps.sh [build|test|demo]   (test installs everything)
#        scripts/deps.sh onnxruntime         (fetches ONNX Runtime, prints its prefix; see below)
set -euo pipefail

# --- ONNX Runtime, for the optional plugin agents/runtimes/onnxruntime.c -----------------------
# Debian has no ONNX Runtime. A pinned CPU build comes from the npm registry: onnxruntime-node ships
# Microsoft's libonnxruntime.so.1 (linux x64) and no headers; com.github.asus4.onnxruntime ships
# the C API headers of the same release (ORT_API_VERSION 29 = ONNX Runtime 1.29). Both are fetched
# with `npm pack` (no install scripts run: onnxruntime-node's would download CUDA libraries, which
# ONNXRUNTIME_NODE_INSTALL=skip also prevents), checked against the SHA-256 below, and only the
# library and the headers are kept, in a cache directory of ours. Prints the prefix for
# ./configure --with-onnxruntime=PREFIX; does nothing when it is already there.
ORT_VERSION=1.29.0
ORT_API=29
ORT_LIB_PKG=onnxruntime-node@1.29.0
ORT_LIB_SHA256=cfdfb45ec4044b1fdca43e5d2e180fb6817e649ff8ad1e0dfc90e18e51b67037
ORT_LIB_PATH=package/bin/napi-v6/linux/x64/libonnxruntime.so.1
ORT_HDR_PKG=com.github.asus4.onnxruntime@0.4.9
ORT_HDR_SHA256=e59788788818fdde1b2e522e766a21ba0f7d8391de55737abf81e32cc801785d
ORT_HDR_DIR='package/Plugins/iOS~/onnxruntime.xcframework/ios-arm64/onnxruntime.framework/Headers'

fetch_onnxruntime() {
	local prefix=${GANGLION_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/ganglion}/onnxruntime-$ORT_VERSION
	local stamp="$ORT_LIB_SHA256 $ORT_HDR_SHA256"
	if [ "$(cat "$prefix/.complete" 2>/dev/null)" = "$stamp" ]; then
		echo "$prefix"
		return
	fi
	[ "$(uname -m)" = x86_64 ] || { echo "deps: the pinned ONNX Runtime is for x86_64 only" >&2; return 1; }
	command -v npm >/dev/null || { echo "deps: npm is needed to fetch ONNX Runtime (apt-get install npm)" >&2; return 1; }
	echo "deps: fetching ONNX Runtime $ORT_VERSION ($ORT_LIB_PKG, $ORT_HDR_PKG) from the npm registry" >&2
	local tmp
	tmp=$(mktemp -d)
	trap 'rm -rf "$tmp"' RETURN
	local pkg sum tgz
	for pkg in "$ORT_LIB_PKG $ORT_LIB_SHA256" "$ORT_HDR_PKG $ORT_HDR_SHA256"; do
		sum=${pkg#* }
		pkg=${pkg% *}
		tgz=$(ONNXRUNTIME_NODE_INSTALL=skip npm pack "$pkg" --silent --ignore-scripts --cache "$tmp/npm-cache" \
			--pack-destination "$tmp" 2>"$tmp/npm.err" | tail -n 1) || { cat "$tmp/npm.err" >&2; return 1; }
		echo "$sum  $tmp/$tgz" | sha256sum -c --quiet - >&2 ||
			{ echo "deps: $pkg does not have the pinned SHA-256 $sum" >&2; return 1; }
		mv "$tmp/$tgz" "$tmp/${pkg%@*}.tgz"
	done
	rm -rf "$prefix"
	mkdir -p "$prefix/lib" "$prefix/include" "$tmp/x"
	tar -C "$tmp/x" -xzf "$tmp/onnxruntime-node.tgz" "$ORT_LIB_PATH"
	tar -C "$tmp/x" -xzf "$tmp/com.github.asus4.onnxruntime.tgz" "$ORT_HDR_DIR"
	install -m 0644 "$tmp/x/$ORT_LIB_PATH" "$prefix/lib/libonnxruntime.so.$ORT_VERSION"
	ln -sf "libonnxruntime.so.$ORT_VERSION" "$prefix/lib/libonnxruntime.so.1"
	ln -sf libonnxruntime.so.1 "$prefix/lib/libonnxruntime.so"
	install -m 0644 "$tmp/x/$ORT_HDR_DIR"/*.h "$prefix/include/"
	# The headers must be those of the library: the C API is asked for by version number.
	grep -q "^#define ORT_API_VERSION $ORT_API\$" "$prefix/include/onnxruntime_c_api.h" &&
		grep -aq "^$ORT_VERSION\$" <(strings -n 5 "$prefix/lib/libonnxruntime.so.$ORT_VERSION") ||
		{ echo "deps: ONNX Runtime headers (want API $ORT_API) and library ($ORT_VERSION) disagree" >&2; return 1; }
	echo "$stamp" >"$prefix/.complete"
	echo "$prefix"
}
if [ "${1:-}" = onnxruntime ]; then
	fetch_onnxruntime
	exit
fi

BUILD_PKGS=(build-essential g++ autoconf automake pkg-config libopencv-dnn-dev ocl-icd-opencl-dev
	libmicrohttpd-dev libgnutls28-dev libpq-dev libjansson-dev libssl-dev libgit2-dev libyaml-dev libcurl4-openssl-dev libxml2-dev zlib1g-dev libcmocka-dev
	clang-format)
RUN_PKGS=(postgresql postgresql-client curl openssl pocl-opencl-icd)
# The demo and the tests generate small ONNX models with numpy references (tests/models/make_models.py);
# the tests also run third-party models with their reference tensors (libonnx-testdata).
MODEL_PKGS=(python3 python3-onnx python3-numpy libonnx-testdata)
# scripts/demo-gitops.sh keeps the fleet in a git repository whose commits it signs with an SSH key.
DEMO_PKGS=(git openssh-client)
# test_gitops.py makes repositories and signs commits with git and ssh-keygen, serves them with git daemon,
# and checks the GitOps JSON Schemas with a third-party validator.
TEST_PKGS=(python3-pytest python3-requests python3-yaml python3-cryptography python3-securesystemslib
	git openssh-client python3-jsonschema)
# The web dashboard's browser test (tests/integration/test_ui.py): Debian's chromium, driven by
# playwright-core (installed below from scripts/ui-test/package-lock.json; it downloads no browser).
TEST_PKGS+=(chromium)
# The fuzz targets (scripts/fuzz.sh, a smoke of each in scripts/test.sh): clang with libFuzzer.
TEST_PKGS+=(clang libclang-rt-dev)
# Scale-out tests (tests/integration/test_scaleout.py): HAProxy in front of two replicas, and a
# throwaway single-node Ceph (monitor, OSD on memstore, radosgw) for the S3 artifact store.
SCALE_PKGS=(haproxy ceph-mon ceph-osd radosgw)
# The Debian packages (make deb, scripts/test-packages.sh): debhelper 13 with dh-sequence-installsysusers,
# lintian; systemd for systemd-analyze and systemd-sysusers/-tmpfiles (the packages' postinst); man-db
# and procps for the checks.
PKG_PKGS=(debhelper dpkg-dev lintian systemd man-db procps)

# The OpenAPI linter (scripts/test.sh) is @redocly/cli from the npm registry, installed below; npm
# also fetches ONNX Runtime (scripts/deps.sh onnxruntime, above).
NODE_PKGS=(nodejs npm)
top=$(cd "$(dirname "$0")/.." && pwd)

want=("${BUILD_PKGS[@]}" "${RUN_PKGS[@]}")
case "${1:-test}" in
test) want+=("${MODEL_PKGS[@]}" "${TEST_PKGS[@]}" "${SCALE_PKGS[@]}" "${PKG_PKGS[@]}") ;;
demo) want+=("${MODEL_PKGS[@]}" "${DEMO_PKGS[@]}") ;;
esac

missing=()
for p in "${want[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# Any Node.js with npm will do (NodeSource's packages, say); Debian's only when there is none.
if [ "${1:-test}" = test ] && ! command -v npm >/dev/null; then
	missing+=("${NODE_PKGS[@]}")
fi

if [ ${#missing[@]} -gt 0 ]; then
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
fi

# @redocly/cli into scripts/redocly/node_modules: npm ci installs exactly the version in
# package-lock.json and refuses a download whose sha512 differs from the one recorded there.
# Skipped when that version is already installed. It needs Node.js 18.17+ (Debian 12's own nodejs is
# 18.20): with an older one the linter is left out and scripts/test.sh reports the API lint as failed,
# saying why. (The 1.x line is pinned on purpose: 2.x needs Node.js 20.19+, which Debian 12 lacks.)
if [ "${1:-test}" = test ]; then
	lint=$top/scripts/redocly
	want_v=$(sed -n 's/.*"@redocly\/cli": "\([0-9.]*\)".*/\1/p' "$lint/package.json")
	have_v=$(sed -n 's/^  "version": "\([0-9.]*\)".*/\1/p' "$lint/node_modules/@redocly/cli/package.json" 2>/dev/null || true)
	node_v=$(node -p 'process.versions.node' 2>/dev/null || echo 0)
	if [ "$have_v" != "$want_v" ]; then
		if node -e 'const [a,b]=process.versions.node.split(".").map(Number); process.exit(a>18||(a==18&&b>=17)?0:1)' 2>/dev/null; then
			npm ci --prefix "$lint" --no-audit --no-fund --ignore-scripts --loglevel=error >/dev/null ||
				{ echo "deps: npm ci in $lint failed" >&2; exit 1; }
		else
			echo "deps: @redocly/cli $want_v needs Node.js 18.17+, not $node_v: the API lint cannot run" >&2
		fi
	fi
fi

# tuf-js (the sigstore project's TUF client) into scripts/tufjs/node_modules, the same way: npm ci
# with every package's sha512 pinned in package-lock.json; tests/integration/test_tuf_client.py runs
# it against gangliond's image repository. tuf-js 3.1 needs Node.js 18.17+, as the linter does.
if [ "${1:-test}" = test ]; then
	tufjs=$top/scripts/tufjs
	want_v=$(sed -n 's/.*"tuf-js": "\([0-9.]*\)".*/\1/p' "$tufjs/package.json")
	have_v=$(sed -n 's/^  "version": "\([0-9.]*\)".*/\1/p' "$tufjs/node_modules/tuf-js/package.json" 2>/dev/null || true)
	if [ "$have_v" != "$want_v" ]; then
		npm ci --prefix "$tufjs" --no-audit --no-fund --ignore-scripts --loglevel=error >/dev/null ||
			{ echo "deps: npm ci in $tufjs failed" >&2; exit 1; }
	fi
fi

# playwright-core into scripts/ui-test/node_modules, the same way (npm ci, sha512 pinned in
# package-lock.json; --ignore-scripts, and playwright-core has no dependencies and fetches nothing
# itself); tests/integration/test_ui.py drives /usr/bin/chromium with it. 1.52 needs Node.js 18+.
if [ "${1:-test}" = test ]; then
	uitest=$top/scripts/ui-test
	want_v=$(sed -n 's/.*"playwright-core": "\([0-9.]*\)".*/\1/p' "$uitest/package.json")
	have_v=$(sed -n 's/^  "version": "\([0-9.]*\)".*/\1/p' "$uitest/node_modules/playwright-core/package.json" 2>/dev/null || true)
	if [ "$have_v" != "$want_v" ]; then
		npm ci --prefix "$uitest" --no-audit --no-fund --ignore-scripts --loglevel=error >/dev/null ||
			{ echo "deps: npm ci in $uitest failed" >&2; exit 1; }
	fi
fi
