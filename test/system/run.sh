#!/usr/bin/env bash
# `npm run test:system [files...]`: host packages, build, the cached gateway image (built in the
# host's network namespace: mmdebstrap needs the Debian archive), then the scenarios inside a
# fresh network namespace that has nothing but loopback, so the guests (qemu user networking,
# restrict=on) can reach only the test's own HTTP server and broker. One scenario at a time:
# each VM takes both cores. OUTPOST_LONG=1 runs the long power-cut series.
# `run.sh --demo` (npm run demo:vm) runs demo-vm.ts in the same namespace instead of the tests.
set -euo pipefail
cd "$(dirname "$0")/../.."
bash scripts/install-host-deps.sh --with-system
npm run build
node --import=tsx test/system/prepare.ts
if [ "${1:-}" = --demo ]; then
  exec unshare --net -- bash -c 'ip link set lo up && exec node --import=tsx test/system/demo-vm.ts'
fi
files=("$@")
[ ${#files[@]} -gt 0 ] || files=(test/system/*.test.ts)
exec unshare --net -- bash -c 'ip link set lo up && exec npx tap --jobs=1 --timeout=5400 "$@"' _ "${files[@]}"
