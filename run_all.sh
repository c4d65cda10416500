#!/usr/bin/env bash
# Run every numbered notebook of a profile with papermill (executed copies and manifest.json go
# to runs/<profile>/<UTC timestamp>/, results to tables/<profile>/ and figures/<profile>/).
#
#   ./run_all.sh                       # profile "default"
#   ./run_all.sh --profile fixture     # tiny CI cohort
#   ./run_all.sh --profile paper --only 01,03
#
# Exits non-zero naming the failed notebook and its executed copy.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

usage() { sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'; }

profile=""
only=""
while [[ $# -gt 0 ]]; do
    case "$1" in
        --profile) profile="${2:?--profile needs a name}"; shift 2 ;;
        --profile=*) profile="${1#*=}"; shift ;;
        --only) only="${2:?--only needs numbers, e.g. 01,03}"; shift 2 ;;
        --only=*) only="${1#*=}"; shift ;;
        -h|--help) usage; exit 0 ;;
        *) echo "run_all.sh: unknown argument: $1" >&2; usage >&2; exit 2 ;;
    esac
done

source scripts/bootstrap_env.sh

args=(run --profile "${profile:-default}")
[[ -n "$only" ]] && args+=(--only "$only")
echo "[run_all] mskseg ${args[*]}"
exec "$MSKSEG_PY" -m mskseg_lib "${args[@]}"
