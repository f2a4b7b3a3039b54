#!/usr/bin/env bash
# Runs the TUF project's client conformance suite (tuf-conformance) against outpost's TUF client,
# through the CLI wrapper scripts/tuf-conformance-client.ts (run `npm run build` first).
#
# Sources, at the commits pinned below:
#   - $OUTPOST_TUF_CONFORMANCE_SRC, if set: a directory holding the extracted trees
#     tuf-conformance/, python-tuf/ and securesystemslib/ (e.g. from `git archive <commit>`);
#   - else clones from GitHub, cached in $OUTPOST_TUF_CONFORMANCE_CACHE (/var/cache/outpost-tuf-conformance).
# Needs python3 with pytest and cryptography >= 40 (else a venv from PyPI), and faketime (installed
# by `scripts/install-host-deps.sh --with-conformance`).
#
# Expected failures live in scripts/tuf-conformance.xfail, one test id a line with its reason after
# whitespace and '#'. They are passed to the suite's own xfail mechanism, which is strict: a listed
# case that passes fails the run, so the list cannot go stale. Exits non-zero on any other failure.
# Extra arguments go to pytest (e.g. -k test_root_rotation, -x).
set -euo pipefail

# tuf-conformance's pyproject pins tuf==7.0.0; the suite only uses tuf's Metadata API to build and
# serve repositories, and runs unchanged on 5.1.0 (checked: python-tuf's own client passes with it).
TUF_CONFORMANCE_COMMIT=eec841c186f81f2d9d8d30460c7e7deefa615f9e   # 2026-08-17, main
PYTHON_TUF_COMMIT=dd4caf439c205aa9c34494b301724f80dcc66fc3        # v5.1.0
SECURESYSTEMSLIB_COMMIT=47b0f4512fe974d6df75dbd4ad62c2642d4e5806  # v1.4.0

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)
client="$repo/dist/scripts/tuf-conformance-client.js"
xfail_list="$here/tuf-conformance.xfail"

[ -f "$client" ] || { echo "tuf-conformance: $client is missing: run npm run build" >&2; exit 69; }
bash "$here/install-host-deps.sh" --with-conformance
# securesystemslib 1.4 needs cryptography >= 40; Debian 12 ships 38. Without a python3 that has it,
# a venv in the cache gets pinned versions from PyPI (the machine fetches the sources anyway).
python=python3
usable() { "$1" -c 'import pytest, cryptography, sys; sys.exit(int(cryptography.__version__.split(".")[0]) < 40)' 2>/dev/null; }
if ! usable "$python"; then
  venv=${OUTPOST_TUF_CONFORMANCE_CACHE:-/var/cache/outpost-tuf-conformance}/venv
  if ! usable "$venv/bin/python3"; then
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet 'cryptography>=40' 'pytest>=7' \
      || { echo "tuf-conformance: python3 needs pytest and cryptography >= 40, and PyPI could not be reached for a venv" >&2; exit 69; }
  fi
  python=$venv/bin/python3
fi

if [ -n "${OUTPOST_TUF_CONFORMANCE_SRC:-}" ]; then
  src=$OUTPOST_TUF_CONFORMANCE_SRC
else
  src=${OUTPOST_TUF_CONFORMANCE_CACHE:-/var/cache/outpost-tuf-conformance}
  fetch() { # name url commit
    local dir="$src/$1"
    if [ "$(cat "$dir/.outpost-commit" 2>/dev/null)" = "$3" ]; then return; fi
    rm -rf "$dir" "$dir.git"
    mkdir -p "$src"
    git clone --quiet --no-checkout "$2" "$dir.git"
    mkdir -p "$dir"
    git -C "$dir.git" archive "$3" | tar -x -C "$dir"
    rm -rf "$dir.git"
    echo "$3" > "$dir/.outpost-commit"
  }
  fetch tuf-conformance https://github.com/theupdateframework/tuf-conformance.git "$TUF_CONFORMANCE_COMMIT"
  fetch python-tuf https://github.com/theupdateframework/python-tuf.git "$PYTHON_TUF_COMMIT"
  fetch securesystemslib https://github.com/secure-systems-lab/securesystemslib.git "$SECURESYSTEMSLIB_COMMIT"
fi
for tree in tuf-conformance/tuf_conformance python-tuf/tuf securesystemslib/securesystemslib; do
  [ -d "$src/$tree" ] || { echo "tuf-conformance: $src/$tree is missing" >&2; exit 69; }
done

work=$(mktemp -d "${TMPDIR:-/tmp}/outpost-tuf-conformance.XXXXXX")
trap 'rm -rf "$work"' EXIT
# The suite splits --entrypoint on spaces and reads "<entrypoint>.xfails": a one-word launcher.
entry="$work/outpost-tuf-client"
printf '#!/bin/sh\nexec %q %q "$@"\n' "$(command -v node)" "$client" > "$entry"
chmod +x "$entry"
# Test ids may hold '#' (test_unusual_role_name[#]): a comment is a line starting with '#' or a '#' after whitespace.
sed -E -e '/^[[:space:]]*#/d' -e 's/[[:space:]]+#.*$//' -e 's/[[:space:]]+$//' -e '/^$/d' "$xfail_list" > "$entry.xfails"

export PYTHONPATH="$src/tuf-conformance:$src/python-tuf:$src/securesystemslib${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONDONTWRITEBYTECODE=1
echo "tuf-conformance: $(wc -l < "$entry.xfails") expected failures listed in ${xfail_list#"$repo"/}"
set +e
(cd "$src/tuf-conformance" && "$python" -m pytest -p no:cacheprovider -q -rfEX --junit-xml="$work/junit.xml" \
  tuf_conformance --entrypoint "$entry" "$@")
status=$?
set -e
"$python" - "$work/junit.xml" <<'EOF'
import sys, xml.etree.ElementTree as ET
root = ET.parse(sys.argv[1]).getroot()
counts = {"passed": 0, "failed": 0, "xfailed": 0, "skipped": 0}
for case in root.iter("testcase"):
    kinds = {child.tag for child in case}
    if "failure" in kinds or "error" in kinds:
        counts["failed"] += 1
    elif "skipped" in kinds:
        msg = next(c for c in case if c.tag == "skipped").get("type", "")
        counts["xfailed" if "xfail" in msg else "skipped"] += 1
    else:
        counts["passed"] += 1
print("tuf-conformance: {passed} passed, {xfailed} xfailed (expected), {failed} failed, {skipped} skipped".format(**counts))
EOF
if [ "$status" -ne 0 ]; then
  echo "tuf-conformance: FAILED (pytest exit $status)" >&2
  exit 1
fi
echo "tuf-conformance: OK"
