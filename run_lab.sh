#!/usr/bin/env bash
# Open JupyterLab on notebooks/ with the project's kernel ("Python 3 (mskseg)") and its state
# folders (.state/), creating or refreshing .venv first.
#
#   ./run_lab.sh                       # profile "default" for notebooks run interactively
#   ./run_lab.sh --profile fixture     # the tiny CI cohort: every notebook finishes in 1-3 minutes
#   ./run_lab.sh --port 8899 --no-browser   # any other argument goes to `jupyter lab`
#
# The profile reaches the notebooks as MSKSEG_PROFILE, which their parameters cell reads; edit
# that cell to switch profile inside a notebook. Saved notebooks keep no outputs and their paired
# notebooks/NN_name.py is saved with them (jupytext), so a saved notebook can be committed as is.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

usage() { sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; }

profile="${MSKSEG_PROFILE:-default}"
lab_args=()
while [[ $# -gt 0 ]]; do
    case "$1" in
        --profile) profile="${2:?--profile needs a name or a YAML path}"; shift 2 ;;
        --profile=*) profile="${1#*=}"; shift ;;
        -h|--help) usage; exit 0 ;;
        *) lab_args+=("$1"); shift ;;
    esac
done

source scripts/bootstrap_env.sh
# fail now, in one line, on a profile that does not load (rather than in the first notebook cell)
"$MSKSEG_PY" -m mskseg_lib validate-profile "$profile" >/dev/null
export MSKSEG_PROFILE="$profile"
echo "[run_lab] profile $profile; notebooks in $(pwd)/notebooks"
# containers and CI machines often run as root, which Jupyter refuses without being told
[[ "$(id -u)" == "0" ]] && lab_args=(--allow-root ${lab_args[@]+"${lab_args[@]}"})
exec "$MSKSEG_PY" -m jupyter lab --config=scripts/jupyter_lab_config.py --ServerApp.root_dir=notebooks \
    ${lab_args[@]+"${lab_args[@]}"}
