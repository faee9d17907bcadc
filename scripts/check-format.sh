#!/bin/sh
# Checks that every tracked C/C++ source is formatted as .clang-format says. Lists the files that
# are not and exits 1; exits 0 when all are; exits 2 when it cannot check (no clang-format).
# Fix with: clang-format -i FILE...   (scripts/test.sh runs this check)
# Usage: scripts/check-format.sh [SRCDIR]   (default: $GANGLION_SRCDIR, $srcdir, or this repository)
top=${1:-${GANGLION_SRCDIR:-${srcdir:-$(cd "$(dirname "$0")/.." && pwd)}}}
CLANG_FORMAT=${CLANG_FORMAT:-clang-format}
cd "$top" || exit 2

if ! command -v "$CLANG_FORMAT" >/dev/null 2>&1; then
	echo "check-format: $CLANG_FORMAT not found (apt-get install clang-format)" >&2
	exit 2
fi
# The tracked sources; outside a git checkout (a release tarball), the source folders.
if ! files=$(git ls-files -- '*.c' '*.h' '*.cpp' 2>/dev/null) || [ -z "$files" ]; then
	files=$(find lib server cli agents tests bench -type f \( -name '*.c' -o -name '*.h' -o -name '*.cpp' \) \
		! -name migrations_gen.c ! -name ui_assets_gen.c 2>/dev/null | sort)
fi
if [ -z "$files" ]; then
	echo "check-format: no C sources found under $top" >&2
	exit 2
fi

bad=0
total=0
for f in $files; do
	[ -f "$f" ] || continue # deleted in the working tree
	total=$((total + 1))
	if ! "$CLANG_FORMAT" --dry-run -Werror "$f" >/dev/null 2>&1; then
		echo "not formatted: $f"
		bad=$((bad + 1))
	fi
done
if [ "$bad" -ne 0 ]; then
	echo "check-format: $bad of $total files differ from .clang-format; run: clang-format -i FILE..."
	exit 1
fi
echo "check-format: all $total files formatted"
exit 0
