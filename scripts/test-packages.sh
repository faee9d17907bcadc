#!/usr/bin/env bash
# Builds the Debian packages and uses them the way an ops team would, on this machine:
#   1. `make deb` (dpkg-buildpackage -b from the release tarball) and a "previous" version: the
#      same tarball with a lower version number; lintian on the packages;
#   2. a fresh `apt-get install ./*.deb`: system users, directories and config modes
#      (sysusers.d, tmpfiles.d), --version, man pages, completion, `systemd-analyze verify` and
#      `security` on the units; gangliond and the agent started as their units would start them
#      (the unit's User, Group, UMask, environment and ExecStart: systemd does not run in CI),
#      migrations applied before serving, a model published, the agent enrolled and serving it
#      on its socket; then `apt-get purge`, and nothing left but what the policy keeps (the data
#      dirs and the system users, see debian/*.README.Debian);
#   3. an upgrade: the previous version installed with data (a model, a token, an enrolled agent),
#      the current one installed over it: the configuration, the data and the device are kept and
#      it serves, a new release included; then a downgrade onto a database that a newer gangliond
#      migrated (a migration it does not know): the old gangliond refuses to start and says why.
# Usage: scripts/test-packages.sh [BUILDDIR]   (default build/; configured and built if needed)
# Needs root (it installs packages and creates system users); refuses to run where gangliond,
# ganglion-agent or their data already exist unless a previous run of this script left them.
# Prints PASS/FAIL lines and ends with "packages: N passed, N failed"; exits 1 on any failure.
# GANGLION_KEEP_TMP=1 keeps the scratch directory (logs, configs).
set -uo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
builddir=$(realpath -m "${1:-build}")

if [ "$(id -u)" -ne 0 ]; then
	command -v sudo >/dev/null && exec sudo -E "$0" "$@"
	echo "test-packages: FAIL: needs root (apt-get install, system users) and there is no sudo"
	echo "packages: 0 passed, 1 failed"
	exit 1
fi
export DEBIAN_FRONTEND=noninteractive LC_ALL=C.UTF-8
unset GANGLIOND_CONFIG GANGLION_CONFIG GANGLION_URL GANGLION_TOKEN

passed=0 failed=0
pass() {
	echo "PASS: $*"
	passed=$((passed + 1))
}
fail() {
	echo "FAIL: $*"
	failed=$((failed + 1))
}
check() { # description, command... (quiet; its output is shown when it fails)
	local what=$1 out
	shift
	if out=$("$@" 2>&1); then pass "$what"; else
		fail "$what"
		[ -n "$out" ] && printf '%s\n' "$out" | tail -n 30 | sed 's/^/    /'
	fi
}
finish() {
	echo "packages: $passed passed, $failed failed"
	[ $failed -eq 0 ] && [ $passed -gt 0 ]
	exit $?
}
step() { printf '\n=== %s ===\n' "$*"; }

PKGS=(gangliond ganglion ganglion-agent)
USERS=(ganglion ganglion-agent)
DATA=(/var/lib/ganglion /var/lib/ganglion-agent)
STAMP=/var/lib/ganglion-package-test.stamp # this script's leftovers, if it exists

for tool in dpkg-buildpackage dh lintian systemd-analyze setpriv curl man psql /usr/bin/python3; do
	command -v "$tool" >/dev/null || { fail "$tool is missing: scripts/deps.sh test installs it"; finish; }
done

# --- what is on the machine already ------------------------------------------------------------
installed() { dpkg-query -W -f='${db:Status-Status}\n' "$1" 2>/dev/null | grep -qv '^not-installed$'; }
remove_all() { # processes of their users, packages, data and users (only after this script made them)
	local p u
	for u in "${USERS[@]}"; do
		for p in $(pgrep -u "$u" 2>/dev/null); do kill -TERM "$p" 2>/dev/null; done
	done
	for _ in $(seq 1 50); do pgrep -u "$(echo "${USERS[@]}" | tr ' ' ,)" >/dev/null 2>&1 || break; sleep 0.2; done
	for u in "${USERS[@]}"; do
		for p in $(pgrep -u "$u" 2>/dev/null); do kill -KILL "$p" 2>/dev/null; done
	done
	for p in "${PKGS[@]}"; do installed "$p" && apt-get purge -y -qq "$p" >/dev/null 2>&1; done
	for p in "${PKGS[@]}"; do installed "$p" && dpkg --purge --force-all "$p" >/dev/null 2>&1; done
	rm -rf "${DATA[@]}" /run/ganglion-agent
	for p in "${USERS[@]}"; do
		getent passwd "$p" >/dev/null && userdel "$p" 2>/dev/null
		getent group "$p" >/dev/null && groupdel "$p" 2>/dev/null
	done
	return 0
}
if [ -e "$STAMP" ]; then
	echo "test-packages: removing what an earlier run left ($STAMP)"
	remove_all
else
	for p in "${PKGS[@]}"; do
		installed "$p" && { fail "package $p is installed here: this test installs and purges it; run it elsewhere"; finish; }
	done
	for d in "${DATA[@]}"; do
		[ -e "$d" ] && { fail "$d exists: this test would remove it; run it elsewhere"; finish; }
	done
	for u in "${USERS[@]}"; do
		getent passwd "$u" >/dev/null && { fail "user $u exists: this test would remove it; run it elsewhere"; finish; }
	done
fi
touch "$STAMP"

work=$(mktemp -d /tmp/ganglion-pkgtest.XXXXXX)
chmod 0755 "$work" # the agent's user reads the trusted roots from here
pids=()
cleanup() {
	local p
	for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null; done
	for p in "${pids[@]}"; do
		for _ in $(seq 1 60); do alive "$p" || break; sleep 0.5; done
		kill -KILL "$p" 2>/dev/null
	done
	for f in /var/lib/ganglion/pg/data/postmaster.pid; do
		[ -e "$f" ] && runuser -u ganglion -- /usr/lib/postgresql/*/bin/pg_ctl -D /var/lib/ganglion/pg/data \
			-m immediate stop >/dev/null 2>&1
	done
	remove_all
	rm -f "$STAMP"
	if [ -n "${GANGLION_KEEP_TMP:-}" ] || [ $failed -gt 0 ]; then echo "test-packages: kept $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT

# --- build ---------------------------------------------------------------------------------------
step "build the packages (make deb) and a previous version"
t0=$(date +%s)
if [ ! -f "$builddir/Makefile" ]; then
	scripts/build.sh "$builddir" >"$work/configure.log" 2>&1 || { fail "configure/build in $builddir (see $work/configure.log)"; finish; }
fi
export DEB_BUILD_OPTIONS="nocheck parallel=2" DEB_BUILD_PROFILES=nocheck # make check ran already
if make -C "$builddir" -s deb >"$work/build.log" 2>&1; then pass "make deb ($(($(date +%s) - t0)) s)"; else
	fail "make deb"
	tail -n 40 "$work/build.log" | sed 's/^/    /'
	finish
fi
version=$(sed -n 's/^PACKAGE_VERSION = //p' "$builddir/Makefile")
debver=$(dpkg-parsechangelog -l debian/changelog -S Version)
commit=$(scripts/gen-version.sh "$top")
cur=$builddir/deb
arch=$(dpkg --print-architecture)
for p in "${PKGS[@]}"; do
	[ -f "$cur/${p}_${debver}_$arch.deb" ] || fail "make deb made no $cur/${p}_${debver}_$arch.deb"
done

# The previous version: the same release tarball with a lower version number, built the same way.
prevver="${version}~prev"
t0=$(date +%s)
rm -rf "$builddir/deb-prev" && mkdir -p "$builddir/deb-prev" &&
	tar -C "$builddir/deb-prev" -xzf "$builddir/ganglion-$version.tar.gz" &&
	src=$builddir/deb-prev/ganglion-$version && cp -R debian "$src/" &&
	sed -i "s/^AC_INIT(\[ganglion\], \[$version\]/AC_INIT([ganglion], [$prevver]/" "$src/configure.ac" &&
	sed -i "1s/($debver)/($prevver-1)/" "$src/debian/changelog" &&
	grep -q "\[$prevver\]" "$src/configure.ac" &&
	(cd "$src" && dpkg-buildpackage -b -us -uc) >"$work/build-prev.log" 2>&1
if [ $? -eq 0 ]; then pass "previous version $prevver-1 built ($(($(date +%s) - t0)) s)"; else
	fail "build of the previous version"
	tail -n 40 "$work/build-prev.log" | sed 's/^/    /'
	finish
fi
prev=$builddir/deb-prev
debs() { local d=$1 v=$2 p; for p in "${PKGS[@]}"; do echo "$d/${p}_${v}_$arch.deb"; done; }
mapfile -t cur_debs < <(debs "$cur" "$debver")
mapfile -t prev_debs < <(debs "$prev" "$prevver-1")

step "lintian"
# Every tag down to pedantic, and the overrides (O:) with their reasons (N:). The verdict is read
# from the tags: --show-overrides makes lintian exit 2 even when every tag is overridden.
lintian -I --pedantic --show-overrides "$cur/ganglion_${debver}_$arch.changes" >"$work/lintian.log" 2>&1
rc=$?
grep -v 'running with root privileges' "$work/lintian.log" | sed 's/^/    /'
if grep -q '^[EW]: ' "$work/lintian.log" || { [ $rc -ne 0 ] && [ $rc -ne 2 ]; }; then
	fail "lintian reports errors or warnings (exit $rc)"
else
	pass "lintian: no error or warning; the overrides, each explained, are in debian/*.lintian-overrides"
fi

# --- helpers: the units, run as systemd would run them --------------------------------------------
unit_file() { echo "/lib/systemd/system/$1.service"; }
unit_get() { sed -n "s/^$2=//p" "$(unit_file "$1")"; }
# Runs a command as the unit's service would: its User, Group and SupplementaryGroups, no
# capabilities, no new privileges, its UMask, in /, with the environment systemd gives a service
# (PATH, HOME, USER, LOGNAME, SHELL, LANG, *_DIRECTORY) plus the unit's Environment=; and first
# creates its StateDirectory/RuntimeDirectory as systemd does at start.
as_unit() { (as_unit_exec "$@"); }
as_unit_exec() { # as as_unit, in this (sub)shell, which it replaces
	local unit=$1 user group umask home shell sup kind d mode
	shift
	user=$(unit_get "$unit" User) group=$(unit_get "$unit" Group) umask=$(unit_get "$unit" UMask)
	sup=$(unit_get "$unit" SupplementaryGroups)
	home=$(getent passwd "$user" | cut -d: -f6) shell=$(getent passwd "$user" | cut -d: -f7)
	local env=(PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin LANG=C.UTF-8 "HOME=$home" "USER=$user"
		"LOGNAME=$user" "SHELL=$shell")
	for kind in State:/var/lib Runtime:/run Cache:/var/cache Logs:/var/log; do
		for d in $(unit_get "$unit" "${kind%%:*}Directory"); do
			mode=$(unit_get "$unit" "${kind%%:*}DirectoryMode")
			install -d -o "$user" -g "$group" -m "${mode:-0755}" "${kind#*:}/$d"
			env+=("$(echo "${kind%%:*}" | tr a-z A-Z)_DIRECTORY=${kind#*:}/$d")
		done
	done
	local e groups=(--init-groups)
	while read -r e; do [ -n "$e" ] && env+=($e); done < <(unit_get "$unit" Environment)
	[ -n "$sup" ] && groups=("--groups=$(echo $sup | tr ' ' ,)")
	cd / && umask "${umask:-0022}" &&
		exec setpriv --reuid="$user" --regid="$group" "${groups[@]}" --no-new-privs --inh-caps=-all \
			--bounding-set=-all env -i "${env[@]}" "$@"
}
# Whether a process is running (not gone, not a zombie waiting for us).
alive() {
	local st
	st=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
	[[ $st != *") Z "* ]]
}
# Starts the unit's ExecStart in the background (log in $work/NAME.log); sets $unit_pid. Fails
# like systemd would skip it when a ConditionPathExists= does not hold.
start_unit() {
	local unit=$1 log=$work/$1.log c
	for c in $(unit_get "$unit" ConditionPathExists); do
		[ -e "$c" ] || { fail "$unit: ConditionPathExists=$c does not hold: systemd would not start it"; return 1; }
	done
	local cmd
	read -ra cmd <<<"$(unit_get "$unit" ExecStart | sed 's/^[-@+!:]*//')"
	echo "--- start $(date +%T): ${cmd[*]}" >>"$log"
	as_unit_exec "$unit" "${cmd[@]}" >>"$log" 2>&1 &
	unit_pid=$! # the program itself: the background subshell execs it
	pids+=("$unit_pid")
}
# SIGTERM (the unit's KillSignal) and wait up to its TimeoutStopSec: it must exit 0.
stop_unit() {
	local unit=$1 pid=$2 t rc
	t=$(unit_get "$unit" TimeoutStopSec)
	kill -TERM "$pid" 2>/dev/null
	for _ in $(seq 1 $((${t%s} * 10))); do alive "$pid" || break; sleep 0.1; done
	if alive "$pid"; then
		kill -KILL "$pid"
		fail "$unit did not stop within ${t} of SIGTERM"
	fi
	wait "$pid"
	rc=$?
	[ $rc -eq 0 ] && pass "$unit stopped cleanly on SIGTERM" || { fail "$unit exited $rc on SIGTERM"; tail -n 20 "$work/$unit.log" | sed 's/^/    /'; }
}
# Polls command until it succeeds; gives up at once if the process $watch (when set) is gone.
watch=
wait_for() { # description, seconds, command...
	local what=$1 secs=$2
	shift 2
	for _ in $(seq 1 $((secs * 5))); do
		"$@" >/dev/null 2>&1 && return 0
		if [ -n "$watch" ] && ! alive "$watch"; then
			fail "$what: the process exited"
			return 1
		fi
		sleep 0.2
	done
	fail "timed out after $secs s waiting for $what"
	return 1
}
free_port() { /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
port=$(free_port)
url=http://127.0.0.1:$port
export GANGLION_URL=$url GANGLION_TOKEN=@/var/lib/ganglion/admin.token
sock=/run/ganglion-agent/infer.sock

# The test models (make check builds them; otherwise they are generated here).
models=$builddir/tests/models
if [ ! -f "$models/v1.onnx" ] || [ ! -f "$models/v2.json" ]; then
	models=$work/models
	/usr/bin/python3 tests/models/make_models.py "$models" >/dev/null 2>&1 || { fail "cannot make the test models (python3-onnx)"; finish; }
fi

# What an operator edits in the shipped configs: where to listen / which server, and quick polls.
configure() {
	printf '\nlisten = 127.0.0.1:%s\nagent-poll-interval = 1s\n' "$port" >>/etc/ganglion/gangliond.conf
	printf '\nserver-url = %s\npoll-min = 1s\n' "$url" >>/etc/ganglion-agent/ganglion-agent.conf
}
start_server() {
	start_unit gangliond || return 1
	server_pid=$unit_pid watch=$unit_pid
	wait_for "gangliond /readyz" 120 curl -sf "$url/readyz" || { watch=; tail -n 30 "$work/gangliond.log" | sed 's/^/    /'; return 1; }
	watch=
	check "gangliond runs as user ganglion" test "$(ps -o user:32= -p "$server_pid")" = ganglion
}
start_agent() {
	start_unit ganglion-agent || return 1
	agent_pid=$unit_pid watch=$unit_pid
	wait_for "the agent's socket" 60 curl -sf --unix-socket $sock http://agent/healthz || { watch=; tail -n 30 "$work/ganglion-agent.log" | sed 's/^/    /'; return 1; }
	watch=
	check "ganglion-agent runs as user ganglion-agent" test "$(ps -o user:32= -p "$agent_pid")" = ganglion-agent
}
serving() { curl -sf --unix-socket $sock http://agent/v1/models | grep -q "\"version\":\"$1\""; }
# The answer to a release's sample input matches the sample's output (within its tolerance).
infer_matches() { # version, meta.json
	/usr/bin/python3 - "$sock" "$@" <<'EOF'
import json, subprocess, sys
sock, version, meta = sys.argv[1:4]
s = json.load(open(meta))["sample"]
p = subprocess.run(["curl", "-sS", "--unix-socket", sock, "-H", "Content-Type: application/json",
                    "-d", json.dumps({"inputs": s["inputs"]}), "http://agent/v1/models/det/infer"],
                   capture_output=True, text=True, timeout=30)
a = json.loads(p.stdout)
got, want = a["outputs"]["y"], s["outputs"]["y"]
ok = a["version"] == version and len(got) == len(want) and all(abs(g - w) <= s["tolerance"] for g, w in zip(got, want))
print(a)
sys.exit(0 if ok else 1)
EOF
}
publish() { # version, model file, meta
	ganglion models push "$2" --name det --version "$1" --meta "$3" --no-progress
}
enroll_agent() {
	local tok
	tok=$(ganglion -o json enroll-tokens create --name pkg-test --label site=test --max-uses 1 --expires-in 1h |
		/usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])') || { fail "enroll-tokens create"; return 1; }
	local auth="Authorization: Bearer $(cat /var/lib/ganglion/admin.token)"
	check "fetch the roots to pin (out of band)" bash -c "curl -sSf -H '$auth' $url/v1/tuf/image/root.json -o $work/image-root.json &&
		curl -sSf -H '$auth' $url/v1/tuf/director/root.json -o $work/director-root.json && chmod 0644 $work/image-root.json $work/director-root.json"
	check "ganglion-agent enroll, as its unit's user, pinning the roots" as_unit ganglion-agent \
		/usr/bin/ganglion-agent --config /etc/ganglion-agent/ganglion-agent.conf enroll --token "$tok" --name pkg-agent \
		--trusted-root "$work/image-root.json" --trusted-director-root "$work/director-root.json"
	device=$(/usr/bin/python3 -c 'import json; print(json.load(open("/var/lib/ganglion-agent/identity/device.json"))["device_id"])') ||
		{ fail "no device identity after enroll"; return 1; }
	check "the device key belongs to ganglion-agent, mode 0600" \
		test "$(stat -c '%U %a' /var/lib/ganglion-agent/identity/key.pem)" = "ganglion-agent 600"
}
# No PostgreSQL process of the ganglion user runs (a zombie that PID 1 does not reap is not one).
no_postgres() { ! ps -u ganglion -o stat=,comm= 2>/dev/null | grep -v '^Z' | grep -q postgres; }
mode_is() { test "$(stat -c '%U:%G %a' "$1")" = "$2"; }
version_is() { test "$("$1" --version)" = "$(basename "$1") $2 (commit $commit)"; }

# Files on the machine (names only); purge must leave nothing new but the kept data and users.
snapshot() {
	find /etc /usr /opt /srv /var/lib /var/cache /var/spool -xdev \( -path /var/lib/dpkg -o -path /var/lib/apt \
		-o -path /var/cache/apt -o -path /var/cache/man -o -path /var/cache/debconf -o -path /var/cache/ldconfig \
		-o -path /var/lib/postgresql -o -path "$STAMP" -o -name __pycache__ \) -prune -o -print 2>/dev/null | sort
}
# Policy (debian/*.README.Debian): the data dirs and the system users stay; so do the backups of
# the user database that adding users makes.
KEPT='^(/var/lib/ganglion|/var/lib/ganglion-agent)(/|$)|^/etc/(passwd|group|shadow|gshadow)-$|^/etc/\.pwd\.lock$'
purge_and_check() { # label
	local out
	out=$(apt-get purge -y -q "${PKGS[@]}" 2>&1) || { fail "apt-get purge: $out"; return 1; }
	pass "$1: apt-get purge ${PKGS[*]}"
	grep -q "/var/lib/ganglion (database cluster, TUF root keys, model artifacts) and the ganglion user are kept" <<<"$out" &&
		grep -q "/var/lib/ganglion-agent (the device's key and identity" <<<"$out" &&
		pass "$1: purge says which data it keeps" || fail "$1: purge did not say what it keeps: $out"
	for p in "${PKGS[@]}"; do installed "$p" && fail "$1: $p is still installed after purge"; done
	local left
	left=$(comm -13 "$work/before.list" <(snapshot) | grep -Ev "$KEPT")
	[ -z "$left" ] && pass "$1: nothing left after purge but the data dirs and the users" ||
		fail "$1: left after purge: $(echo $left)"
	[ -e /run/ganglion-agent ] && fail "$1: /run/ganglion-agent left after purge"
	check "$1: the data is kept (admin.token, TUF root keys, database cluster, the device identity)" \
		test -s /var/lib/ganglion/admin.token -a -d /var/lib/ganglion/keys -a -d /var/lib/ganglion/pg/data \
		-a -s /var/lib/ganglion-agent/identity/device.json
	check "$1: the system users are kept" getent passwd ganglion ganglion-agent
}
snapshot >"$work/before.list"

# --- 2. fresh install ----------------------------------------------------------------------------
step "fresh install of $debver"
if apt-get install -y -q --no-install-recommends "${cur_debs[@]}" >"$work/install.log" 2>&1; then
	pass "apt-get install ./gangliond ./ganglion ./ganglion-agent ($debver)"
else
	fail "apt-get install"
	tail -n 30 "$work/install.log" | sed 's/^/    /'
	finish
fi
check "system users from sysusers.d: ganglion, ganglion-agent (no login, home = data dir)" bash -c \
	'getent passwd ganglion | grep -q ":/var/lib/ganglion:/usr/sbin/nologin$" &&
	 getent passwd ganglion-agent | grep -q ":/var/lib/ganglion-agent:/usr/sbin/nologin$"'
check "tmpfiles.d: /var/lib/ganglion ganglion:ganglion 0700" mode_is /var/lib/ganglion "ganglion:ganglion 700"
check "tmpfiles.d: /var/lib/ganglion-agent ganglion-agent 0700" mode_is /var/lib/ganglion-agent "ganglion-agent:ganglion-agent 700"
check "tmpfiles.d: /run/ganglion-agent ganglion-agent 0750" mode_is /run/ganglion-agent "ganglion-agent:ganglion-agent 750"
check "tmpfiles.d: /etc/ganglion/gangliond.conf root:ganglion 0640" mode_is /etc/ganglion/gangliond.conf "root:ganglion 640"
check "tmpfiles.d: /etc/ganglion-agent/ganglion-agent.conf root:ganglion-agent 0640" \
	mode_is /etc/ganglion-agent/ganglion-agent.conf "root:ganglion-agent 640"
check "the configs are conffiles" bash -c 'dpkg-query -W -f="\${Conffiles}" gangliond | grep -q " /etc/ganglion/gangliond.conf " &&
	dpkg-query -W -f="\${Conffiles}" ganglion-agent | grep -q " /etc/ganglion-agent/ganglion-agent.conf "'
check "the shipped configs are the installed programs' sample-config" bash -c \
	'cmp /etc/ganglion/gangliond.conf <(gangliond sample-config) && cmp /etc/ganglion-agent/ganglion-agent.conf <(ganglion-agent sample-config)'
plugin=$(sed -n 's/^#runtime-plugin = //p' /etc/ganglion-agent/ganglion-agent.conf)
check "the agent's default runtime plugin is installed ($plugin)" test -f "$plugin"
for b in /usr/bin/gangliond /usr/bin/ganglion /usr/bin/ganglion-agent; do
	check "$(basename $b) --version: $version (commit $commit)" version_is $b "$version"
done
check "man pages: gangliond(8), gangliond.conf(5), ganglion(1), ganglion-agent(8), ganglion-agent.conf(5)" bash -c \
	'man -w 8 gangliond && man -w 5 gangliond.conf && man -w 1 ganglion && man -w 8 ganglion-agent && man -w 5 ganglion-agent.conf'
check "bash completion installed for ganglion and ganglion-agent" bash -c \
	'source /usr/share/bash-completion/completions/ganglion && COMP_WORDS=(ganglion devi) COMP_CWORD=1 && _ganglion &&
	 [ "${COMPREPLY[*]}" = devices ] && source /usr/share/bash-completion/completions/ganglion-agent &&
	 COMP_WORDS=(ganglion-agent enr) COMP_CWORD=1 && _ganglion_agent && [ "${COMPREPLY[*]}" = enroll ]'
check "systemd-analyze verify gangliond.service ganglion-agent.service" bash -c \
	'out=$(systemd-analyze verify /lib/systemd/system/gangliond.service /lib/systemd/system/ganglion-agent.service 2>&1);
	 rc=$?; echo "$out"; [ $rc -eq 0 ] && ! grep -q "ganglion" <<<"$out"'
for u in gangliond ganglion-agent; do
	score=$(systemd-analyze security --offline=true --no-pager "$(unit_file $u)" 2>&1 | sed -n 's/.*Overall exposure level for .*: \([0-9.]*\).*/\1/p')
	check "systemd-analyze security $u: exposure $score (at most 2.5)" \
		systemd-analyze security --offline=true --threshold=25 --no-pager "$(unit_file $u)"
done

step "run the installed programs as their units"
configure
if start_server; then
	check "every migration applied before the server listened" /usr/bin/python3 - "$work/gangliond.log" \
		"$(find "$builddir/deb-prev/ganglion-$version/migrations" -name '*.sql' | wc -l)" <<'EOF'
import sys
lines = open(sys.argv[1]).read().splitlines()
applied = [i for i, l in enumerate(lines) if "event=migration_applied" in l]
listening = [i for i, l in enumerate(lines) if "event=listening" in l]
print(f"{len(applied)} migrations applied, listening at line {listening}")
sys.exit(0 if len(applied) == int(sys.argv[2]) and listening and max(applied) < listening[0] else 1)
EOF
	check "the private cluster belongs to ganglion (0700)" mode_is /var/lib/ganglion/pg/data "ganglion:ganglion 700"
	check "admin.token ganglion 0600" mode_is /var/lib/ganglion/admin.token "ganglion:ganglion 600"
	check "ganglion models push det 1.0.0 (the installed CLI)" publish 1.0.0 "$models/v1.onnx" "$models/v1.json"
	enroll_agent
	check "ganglion devices assign det@1.0.0" ganglion devices assign "$device" det@1.0.0
	if start_agent; then
		wait_for "the agent to serve det 1.0.0" 90 serving 1.0.0 && pass "the agent installed det 1.0.0"
		check "inference on $sock answers the release's sample" infer_matches 1.0.0 "$models/v1.json"
		check "the socket is for the ganglion-agent group: srw-rw---- ganglion-agent:ganglion-agent" \
			mode_is $sock "ganglion-agent:ganglion-agent 660"
		check "a user outside that group cannot use the socket" bash -c \
			"! runuser -u nobody -- curl -sf --unix-socket $sock http://agent/healthz"
		stop_unit ganglion-agent "$agent_pid"
	fi
	stop_unit gangliond "$server_pid"
	wait_for "the private cluster to stop with gangliond" 10 no_postgres && pass "the private cluster stopped with gangliond"
fi
step "purge"
purge_and_check "fresh install"
remove_all

# --- 3. upgrade from the previous version, then a downgrade -----------------------------------------
step "install the previous version $prevver-1 and put data in it"
if apt-get install -y -q --no-install-recommends "${prev_debs[@]}" >"$work/install-prev.log" 2>&1; then
	pass "apt-get install ./*_$prevver-1_$arch.deb"
else
	fail "apt-get install of the previous version"
	tail -n 30 "$work/install-prev.log" | sed 's/^/    /'
	finish
fi
check "gangliond --version: $prevver" version_is /usr/bin/gangliond "$prevver"
configure
if start_server; then
	check "push det 1.0.0 on $prevver" publish 1.0.0 "$models/v1.onnx" "$models/v1.json"
	check "create a token" ganglion tokens create --name kept-across-upgrade --scope ci
	enroll_agent
	check "assign det@1.0.0" ganglion devices assign "$device" det@1.0.0
	if start_agent; then
		wait_for "the agent to serve det 1.0.0" 90 serving 1.0.0 && pass "$prevver: the agent serves det 1.0.0"
		stop_unit ganglion-agent "$agent_pid"
	fi
	stop_unit gangliond "$server_pid"
fi
admin_before=$(cat /var/lib/ganglion/admin.token)

step "upgrade to $debver"
if apt-get install -y -q --no-install-recommends "${cur_debs[@]}" >"$work/upgrade.log" 2>&1; then
	pass "apt-get install ./*_${debver}_$arch.deb over $prevver-1"
else
	fail "apt-get install (upgrade)"
	tail -n 30 "$work/upgrade.log" | sed 's/^/    /'
fi
check "gangliond is at $debver" test "$(dpkg-query -W -f='${Version}' gangliond)" = "$debver"
check "gangliond --version: $version" version_is /usr/bin/gangliond "$version"
check "the edited configs are kept, with no .dpkg-* copies" bash -c \
	"grep -q '^listen = 127.0.0.1:$port' /etc/ganglion/gangliond.conf && grep -q '^server-url = $url' /etc/ganglion-agent/ganglion-agent.conf &&
	 ! ls /etc/ganglion/*.dpkg-* /etc/ganglion-agent/*.dpkg-* 2>/dev/null"
check "the data dirs keep their owners and modes" bash -c \
	'[ "$(stat -c "%U %a" /var/lib/ganglion /var/lib/ganglion-agent | tr "\n" " ")" = "ganglion 700 ganglion-agent 700 " ]'
check "admin.token unchanged" test "$(cat /var/lib/ganglion/admin.token)" = "$admin_before"
if start_server; then
	check "the model, the token and the device are still there" bash -c \
		"ganglion -o json models show det@1.0.0 >/dev/null && ganglion tokens list | grep -q kept-across-upgrade &&
		 ganglion -o json devices show $device | /usr/bin/python3 -c 'import json,sys; sys.exit(json.load(sys.stdin)[\"status\"] != \"active\")'"
	if start_agent; then
		wait_for "the agent to serve det 1.0.0 again" 60 serving 1.0.0 && pass "after the upgrade the agent serves det 1.0.0 from its disk"
		check "push det 2.0.0 after the upgrade" publish 2.0.0 "$models/v2.onnx" "$models/v2.json"
		check "assign det@2.0.0" ganglion devices assign "$device" det@2.0.0
		wait_for "the agent to serve det 2.0.0" 90 serving 2.0.0 && pass "the upgraded server and agent roll out det 2.0.0"
		check "inference answers 2.0.0's sample" infer_matches 2.0.0 "$models/v2.json"
		stop_unit ganglion-agent "$agent_pid"
	fi
	# What a newer gangliond would leave behind: a migration this version does not know.
	check "record a migration from a newer gangliond" runuser -u ganglion -- psql -X -q -v ON_ERROR_STOP=1 \
		"host=/var/lib/ganglion/pg/run port=5432 dbname=ganglion user=ganglion" \
		-c "INSERT INTO schema_migrations (version, name, checksum) VALUES (9999, '9999_from_a_newer_gangliond', 'x')"
	stop_unit gangliond "$server_pid"
fi

step "downgrade to $prevver-1 onto that database"
if apt-get install -y -q --allow-downgrades --no-install-recommends "${prev_debs[@]}" >"$work/downgrade.log" 2>&1; then
	pass "apt-get install --allow-downgrades ./*_$prevver-1_$arch.deb"
	: >"$work/gangliond.log"
	if start_unit gangliond; then
		server_pid=$unit_pid
		for _ in $(seq 1 600); do alive "$server_pid" || break; sleep 0.2; done
		alive "$server_pid" && { fail "the old gangliond still runs after 120 s"; kill -TERM "$server_pid"; }
		wait "$server_pid"
		rc=$?
		[ $rc -ne 0 ] && pass "the old gangliond refuses to start (exit $rc)" || fail "the old gangliond exited 0 on a newer database"
		check "... saying why: $(grep -o 'the database was migrated by a newer gangliond[^"]*' "$work/gangliond.log" | head -c 200)..." \
			grep -q "the database was migrated by a newer gangliond: it has migration 9999_from_a_newer_gangliond, which this gangliond $prevver" "$work/gangliond.log"
		check "... without serving" bash -c "! grep -q event=listening $work/gangliond.log"
		wait_for "the private cluster to stop" 10 no_postgres && pass "... and stops the private cluster"
	fi
else
	fail "apt-get install --allow-downgrades"
	tail -n 30 "$work/downgrade.log" | sed 's/^/    /'
fi
step "purge"
purge_and_check "after upgrade and downgrade"
finish
