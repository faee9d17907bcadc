#!/bin/sh
# Checks gangliond's layering (docs/DESIGN.md, "Layers inside gangliond"); run by `make check`.
#   1. Only the transport includes libmicrohttpd or the HTTP layer: a file in server/ other than
#      http.c, http.h, http_*.c, http_*.h and main.c (which wires the layers) may not include
#      "http.h" or <microhttpd.h>.
#   2. Only server/db.c writes transaction SQL: no other server/ source holds a string literal
#      that starts with BEGIN, COMMIT, ROLLBACK, START TRANSACTION, SAVEPOINT, RELEASE SAVEPOINT,
#      END or ABORT. Use db_tx_begin/db_tx_commit/db_tx_rollback (server/db.h) instead.
# Comments are ignored; each violation is printed as FILE:LINE: what. Exit 0 when clean, 1 on a
# violation, 99 (a hard error for automake) when the sources cannot be found.
# The source tree is $GANGLION_SRCDIR, else $srcdir (both set by `make check`), else this repository.
top=${GANGLION_SRCDIR:-${srcdir:-$(cd "$(dirname "$0")/.." && pwd)}}
if [ ! -f "$top/server/db.c" ]; then
	echo "check-layers: no server/db.c under '$top' (set GANGLION_SRCDIR)" >&2
	exit 99
fi
cd "$top" || exit 99

# Prints "LINE<TAB>c<TAB>code" for each line with comments blanked out, and "LINE<TAB>s<TAB>text"
# for each string literal (text as written, escapes left alone). POSIX awk.
scan() {
	awk '
	function flush() { print NR "\tc\t" code; code = "" }
	{
		line = $0; n = length(line); i = 1
		while (i <= n) {
			ch = substr(line, i, 1); two = substr(line, i, 2)
			if (state == "comment") {
				if (two == "*/") { state = ""; i += 2; code = code " " } else i++
				continue
			}
			if (two == "/*") { state = "comment"; i += 2; continue }
			if (two == "//") break
			if (ch == "\"" || ch == "\047") {
				q = ch; j = i + 1; text = ""
				while (j <= n && substr(line, j, 1) != q) {
					if (substr(line, j, 1) == "\\") { text = text substr(line, j, 2); j += 2 }
					else { text = text substr(line, j, 1); j++ }
				}
				if (q == "\"") print NR "\ts\t" text
				code = code substr(line, i, j - i + 1); i = j + 1
				continue
			}
			code = code ch; i++
		}
		flush()
	}' "$1"
}

is_transport() {
	case $1 in
	server/http.c | server/http.h | server/http_*.c | server/http_*.h | server/main.c) return 0 ;;
	esac
	return 1
}

tmp=$(mktemp) || exit 99
trap 'rm -f "$tmp"' EXIT
for f in server/*.c server/*.h; do
	[ -f "$f" ] || continue
	case $f in
	server/migrations_gen.c | server/ui_assets_gen.c) continue ;; # generated from migrations/*.sql, ui/*
	esac
	scan "$f" >"$tmp"
	if ! is_transport "$f"; then
		awk -F '\t' -v f="$f" '$2 == "c" && $3 ~ /^[ \t]*#[ \t]*include[ \t]*[<"]([^">]*\/)?(http|microhttpd)\.h[">]/ {
			sub(/^[ \t]*/, "", $3)
			print f ":" $1 ": " $3 " (only the transport, server/http*.c and main.c, may include it)"
		}' "$tmp"
	fi
	case $f in
	server/db.c | server/db.h) ;;
	*)
		awk -F '\t' -v f="$f" '$2 == "s" && $3 ~ /^[ \t]*(BEGIN|COMMIT|ROLLBACK|START TRANSACTION|SAVEPOINT|RELEASE SAVEPOINT|END|ABORT)([ \t;].*)?$/ {
			print f ":" $1 ": transaction SQL \"" $3 "\" written by hand (use db_tx_begin/db_tx_commit/db_tx_rollback)"
		}' "$tmp"
		;;
	esac
done >"$tmp.out"
rm -f "$tmp"
if [ -s "$tmp.out" ]; then
	cat "$tmp.out"
	echo "check-layers: $(wc -l <"$tmp.out") violation(s) of the layering rules (docs/DESIGN.md, docs/HACKING.md)"
	rm -f "$tmp.out"
	exit 1
fi
rm -f "$tmp.out"
echo "check-layers: server/ keeps its layers"
exit 0
