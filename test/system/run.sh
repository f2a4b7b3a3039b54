#!/usr/bin/env bash
# `npm run test:system [files...]`: host packages, build, the cached gateway image (built in the
# host's network namespace: mmdebstrap needs the Debian archive), then the scenarios inside a
# fresh network namespace that has nothing but loopback, so the guests (qemu user networking,
# restrict=on) can reach only the test's own HTTP server and broker. One scenario at a time:
# each VM takes both cores. OUTPOST_LONG=1 runs the long power-cut series.
set -euo pipefail
cd "$(dirname "$0")/../.."
bash scripts/install-host-deps.sh --with-system
npm run build
node --import=tsx test/system/prepare.ts
files=("$@")
[ ${#files[@]} -gt 0 ] || files=(test/system/*.test.ts)
exec unshare --net -- bash -c 'ip link set lo up && exec npx tap --jobs=1 --timeout=5400 "$@"' _ "${files[@]}"
