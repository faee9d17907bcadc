#!/usr/bin/env bash
# The man pages and bash completion scripts the build wrote (make all, from the programs' own
# tables) against the programs: --version names configure.ac's version and the commit; each page
# is what its program prints now, renders without a groff warning (as lintian checks), and lists
# every option and command that --help lists; each config page lists every key of the sample
# config; the completion scripts complete commands, subcommands, options and their values.
# Run by make check (GANGLION_BUILDDIR, GANGLION_SRCDIR).
set -uo pipefail
b=${GANGLION_BUILDDIR:?} s=${GANGLION_SRCDIR:?}
fails=0
fail() {
	echo "FAIL: $*"
	fails=$((fails + 1))
}
ok() { echo "ok: $*"; }
command -v man >/dev/null || { echo "FAIL: man (man-db) is not installed: scripts/deps.sh test installs it"; exit 1; }

declare -A prog=([gangliond]=server/gangliond [ganglion]=cli/ganglion [ganglion-agent]=agents/ganglion-agent)
version=$(sed -n 's/^PACKAGE_VERSION = //p' "$b/Makefile")
commit=$("$s/scripts/gen-version.sh" "$s")
for p in gangliond ganglion ganglion-agent; do
	got=$("$b/${prog[$p]}" --version 2>&1)
	[ "$got" = "$p $version (commit $commit)" ] && ok "$p --version: $got" ||
		fail "$p --version printed '$got', expected '$p $version (commit $commit)'"
done
got=$("$b/server/gangliond" --listen 127.0.0.1:1 --version 2>&1)
[ "$got" = "gangliond $version (commit $commit)" ] || fail "gangliond --listen X --version printed '$got'"
# A flag's value is not --version: here it is the data dir, and `routes` runs (offline).
got=$("$b/server/gangliond" --data-dir --version routes 2>&1)
grep -q "^GET /healthz" <<<"$got" || fail "gangliond --data-dir --version routes printed '$got'"

# page file, program, command that prints it
pages=("gangliond.8 gangliond man" "gangliond.conf.5 gangliond man-config" "ganglion.1 ganglion man"
	"ganglion-agent.8 ganglion-agent man" "ganglion-agent.conf.5 ganglion-agent man-config")
for entry in "${pages[@]}"; do
	read -r page p cmd <<<"$entry"
	f=$b/man/$page
	[ -s "$f" ] || { fail "$f was not built"; continue; }
	cmp -s "$f" <(env -i "$b/${prog[$p]}" "$cmd") || fail "$f differs from '$p $cmd'"
	warn=$(LC_ALL=C.UTF-8 MANROFFSEQ='' MANWIDTH=80 man --warnings -E UTF-8 -l -Tutf8 -Z "$f" 2>&1 >/dev/null)
	[ -z "$warn" ] && ok "$page renders without warnings" || fail "$page: groff warnings: $warn"
	text=$(LC_ALL=C.UTF-8 MANWIDTH=200 man -l "$f" 2>/dev/null | sed 's/\xe2\x80\x90//g')
	case $page in
	*.conf.5)
		keys=$(env -i "$b/${prog[$p]}" sample-config | sed -n 's/^#\([a-z0-9-]*\) = .*/\1/p')
		[ -n "$keys" ] || fail "$p sample-config lists no key"
		for k in $keys; do grep -q "^ *$k = " <<<"$text" || fail "$page does not list key $k"; done
		ok "$page lists the $(wc -w <<<"$keys") keys of '$p sample-config'"
		;;
	ganglion.1)
		n=0
		for g in $("$b/cli/ganglion" --help | sed -n '/^Commands:/,/^$/s/^  \([a-z-]*\) .*/\1/p'); do
			[ "$g" = man ] || [ "$g" = completion ] && continue
			for c in $("$b/cli/ganglion" "$g" --help | sed -n '/^Commands:/,/^$/s/^  \([a-z-]*\) .*/\1/p'); do
				grep -q "ganglion $g $c" <<<"$text" || fail "$page does not document 'ganglion $g $c'"
				for o in $("$b/cli/ganglion" "$g" "$c" --help | grep -o -- '--[a-z][a-z-]*' | sort -u); do
					grep -q -- "$o" <<<"$text" || fail "$page does not document $o of 'ganglion $g $c'"
				done
				n=$((n + 1))
			done
		done
		[ $n -gt 10 ] && ok "$page documents the $n commands of 'ganglion --help' and their options" ||
			fail "$page: only $n commands found in 'ganglion --help'"
		for o in $("$b/cli/ganglion" --help | grep -o -- '--[a-z][a-z-]*' | sort -u); do
			grep -q -- "$o" <<<"$text" || fail "$page does not document global option $o"
		done
		;;
	*)
		help=$(env -i "$b/${prog[$p]}" --help)
		for o in $(grep -o -- '^  --[a-z][a-z-]*' <<<"$help"); do
			grep -q -- "^ *$o" <<<"$text" || fail "$page does not document $o"
		done
		for c in $(sed -n '/^Commands:/,/^[^ ]/s/^  \([a-z-]*\).*/\1/p' <<<"$help"); do
			grep -q "^ *$c\b" <<<"$text" || fail "$page does not document command $c"
		done
		ok "$page documents the options and commands of '$p --help'"
		;;
	esac
done

# Completion: what bash offers after the words typed so far (the last one is being completed).
complete_words() { # script, words...
	bash -c 'source "$1"; shift; COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); f=$(complete -p "$1" | awk "{print \$3}");
		$f; printf "%s\n" "${COMPREPLY[@]}"' _ "$@" 2>&1 | sort | tr '\n' ' ' | sed 's/ $//'
}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
touch "$tmp/model.onnx" "$tmp/meta.json"
check_completion() { # script, expected, words...
	local script=$1 want=$2
	shift 2
	local got
	got=$(cd "$tmp" && complete_words "$script" "$@")
	[ "$got" = "$want" ] && ok "completion of '$*' -> $got" || fail "completion of '$*' gave '$got', expected '$want'"
}
for p in ganglion ganglion-agent; do
	[ -s "$b/completion/$p" ] || fail "$b/completion/$p was not built"
	cmp -s "$b/completion/$p" <(env -i "$b/${prog[$p]}" completion) || fail "completion/$p differs from '$p completion'"
done
c=$b/completion/ganglion
check_completion "$c" "devices" ganglion dev
check_completion "$c" "list" ganglion devices li
check_completion "$c" "list" ganglion --url http://x -o json devices li
check_completion "$c" "table" ganglion -o ta
check_completion "$c" "--output" ganglion --outp
check_completion "$c" "--action --actor --all" ganglion audit list --a
check_completion "$c" "--all" ganglion audit list --al
check_completion "$c" "meta.json model.onnx" ganglion models push --name det ""
check_completion "$c" "meta.json model.onnx" ganglion models push --meta ""
check_completion "$c" "" ganglion models push --version ""
check_completion "$c" "import-root" ganglion keys im
c=$b/completion/ganglion-agent
check_completion "$c" "enroll" ganglion-agent --server-url http://x en
check_completion "$c" "--trusted-director-root --trusted-root" ganglion-agent enroll --token x --tru
check_completion "$c" "meta.json model.onnx" ganglion-agent enroll --trusted-root ""
check_completion "$c" "--runtime-options --runtime-plugin --runtime-target" ganglion-agent --runtime-

echo "$fails failure(s)"
[ $fails -eq 0 ]
