#!/usr/bin/env bash
# Configures and builds into DIR (default build/) with extra configure flags; reuses what is there,
# and configures again when the flags differ from those DIR was configured with.
# Usage: scripts/build.sh [DIR] [configure flags...]
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
dir=${1:-build}
shift || true
cd "$top"
[ -x configure ] && [ configure -nt configure.ac ] || autoreconf -fi >/dev/null 2>&1 || autoreconf -fi
mkdir -p "$dir"
cd "$dir"
flags="$*"
if [ ! -f Makefile ] || [ "$(cat .configure-flags 2>/dev/null)" != "$flags" ]; then
	"$top/configure" -q "$@"
	echo "$flags" >.configure-flags
fi
make -s -j"$(nproc)"
