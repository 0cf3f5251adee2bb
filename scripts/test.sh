#!/usr/bin/env bash
# Run the test suite; pytest's "no tests collected" (exit 5) counts as a failure to run.
set -uo pipefail
.venv/bin/pytest "$@"
rc=$?
if [[ $rc -eq 5 ]]; then echo "no tests were collected" >&2; exit 1; fi
exit $rc
