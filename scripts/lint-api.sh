#!/usr/bin/env bash
# Lints the REST contract, api/openapi.yaml, with the Redocly CLI that scripts/deps.sh installs
# (version and sha512 pinned in scripts/redocly/package-lock.json) and the rules in
# api/redocly.yaml: exits 0 only when there is no error and no warning.
set -uo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
redocly=$top/scripts/redocly/node_modules/.bin/redocly
if [ ! -x "$redocly" ]; then
	echo "lint-api: $redocly is not installed (scripts/deps.sh test installs it; it needs Node.js 18.17+, which Debian 12's nodejs package has)"
	exit 1
fi
# No telemetry and no update check: the result must not depend on the network.
export REDOCLY_TELEMETRY=off REDOCLY_SUPPRESS_UPDATE_NOTICE=true
exec "$redocly" lint --config "$top/api/redocly.yaml" --format=stylish "$top/api/openapi.yaml"
