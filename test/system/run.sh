#!/usr/bin/env bash
# `npm run test:system [files...]`: host packages, build, the cached gateway image (built in the
# host's network namespace: mmdebstrap needs the Debian archive), then the scenarios inside a
# fresh network namespace that has nothing but loopback, so the guests (qemu user networking,
# restrict=on) can reach only the test's own HTTP server and broker. Two scenario files run side
# by side, each VM with one vCPU: a TCG guest keeps one host core busy most of the time (two only
# in bursts while booting), so this nearly halves the wall time on 2 cores. OUTPOST_SYSTEM_JOBS=1
# runs one at a time; OUTPOST_LONG=1 runs the long power-cut series.
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
export OUTPOST_SYSTEM_SMP=${OUTPOST_SYSTEM_SMP:-1}
exec unshare --net -- bash -c 'ip link set lo up && exec npx tap --jobs="${OUTPOST_SYSTEM_JOBS:-2}" --timeout=5400 "$@"' _ "${files[@]}"
