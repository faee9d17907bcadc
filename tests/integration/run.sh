#!/bin/sh
# The automake TESTS entry for the integration tests: runs pytest on tests/integration against
# the binaries in $GANGLION_BUILDDIR. Exit 77 (skipped) only when python3-pytest is missing.
srcdir=${GANGLION_SRCDIR:-$(cd "$(dirname "$0")/../.." && pwd)}
builddir=${GANGLION_BUILDDIR:-$srcdir/build}
GANGLION_SRCDIR=$srcdir
GANGLION_BUILDDIR=$builddir
export GANGLION_SRCDIR GANGLION_BUILDDIR

# Debian's python3-* modules; a pyenv python3 on PATH cannot see them.
PYTHON=/usr/bin/python3
PYTHONDONTWRITEBYTECODE=1
export PYTHONDONTWRITEBYTECODE
if ! "$PYTHON" -c 'import pytest' 2>/dev/null; then
	echo "SKIP: python3-pytest is not installed"
	exit 77
fi

mkdir -p "$builddir/tests/integration"
# The whole directory, unless the arguments name test files or directories themselves
# (run.sh tests/integration/test_tuf.py -x runs that file only).
whole=yes
for arg in "$@"; do
	case $arg in
	-*) ;;
	*) [ -e "${arg%%::*}" ] && whole= ;;
	esac
done
[ -n "$whole" ] && set -- "$srcdir/tests/integration" "$@"
exec "$PYTHON" -m pytest -q -p no:cacheprovider -rfE \
	--junitxml="$builddir/tests/integration/junit.xml" "$@"
