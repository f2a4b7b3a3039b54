#!/usr/bin/env bash
# `npm run test:system [files...]`: host packages, build, the cached gateway image (built in the
# host's network namespace: mmdebstrap needs the Debian archive), then the scenarios inside a
# fresh network namespace that has nothing but loopback, so the guests (qemu user networking,
# restrict=on) can reach only the test's own HTTP server and broker.
# With no files named, two lanes run side by side, each VM with one vCPU (a TCG guest keeps one
# host core busy most of the time, two only in bursts while booting, so this nearly halves the
# wall time on 2 cores), balanced by measured durations (CI, 2 cores: 02 26 min, 06 24 min, 05
# ~33-58 min, 08 5 min, 01 2 min): the power-cut series (with the rig's TPM check), bundle and
# systemd scenarios in one, the update/rollback and watchdog scenarios in the other (tap).
# Named files run one at a time with 2 vCPUs. OUTPOST_LONG=1 runs the long power-cut series.
# `run.sh --demo` (npm run demo:vm) runs demo-vm.ts in the same namespace instead of the tests.
set -euo pipefail
cd "$(dirname "$0")/../.."
lane_a=(test/system/05-powercut.test.ts test/system/08-bundle.test.ts test/system/01-systemd.test.ts)
if [ "${1:-}" = --lanes ]; then
  # Inside the namespace. A second tap process in the same checkout would stop the first, so
  # lane A runs its files with node directly (tap's own output, no summary) into a log.
  ip link set lo up
  log=$(mktemp); trap 'rm -f "$log"' EXIT
  ( rc=0; for f in "${lane_a[@]}"; do echo "# $f"; TAP_TIMEOUT=5400 node --import=tsx "$f" || rc=1; done; exit $rc ) >"$log" 2>&1 &
  lane=$!
  lane_b=()
  for f in test/system/*.test.ts; do [[ " ${lane_a[*]} " == *" $f "* ]] || lane_b+=("$f"); done
  rc=0
  npx tap --jobs=1 --timeout=5400 "${lane_b[@]}" || rc=$?
  wait "$lane" || rc=$?
  echo "# second lane: ${lane_a[*]}"; cat "$log"
  [ "$rc" -eq 0 ] && echo "# system tests: all passed" || echo "# system tests: FAILED (see above)"
  exit "$rc"
fi
bash scripts/install-host-deps.sh --with-system
npm run build
node --import=tsx test/system/prepare.ts
if [ "${1:-}" = --demo ]; then
  exec unshare --net -- bash -c 'ip link set lo up && exec node --import=tsx test/system/demo-vm.ts'
fi
if [ $# -gt 0 ]; then
  exec unshare --net -- bash -c 'ip link set lo up && exec npx tap --jobs=1 --timeout=5400 "$@"' _ "$@"
fi
export OUTPOST_SYSTEM_SMP=${OUTPOST_SYSTEM_SMP:-1}
exec unshare --net -- bash "$0" --lanes
