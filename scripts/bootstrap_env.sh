#!/usr/bin/env bash
# Create/refresh the project virtualenv (.venv) and point tool state into .state/.
#
# Called (or sourced) by run_all.sh and run_tests.sh. Installs only when pyproject.toml or
# requirements/*.txt changed since the last successful install: their hash is kept in
# .venv/.mskseg-installed. All versions come from requirements/constraints.txt (pip -c).
# sam2 is installed last, without build isolation and without its CUDA extension, because its
# build needs the torch already in the venv.
#
#   PYTHON=python3.11 scripts/bootstrap_env.sh     # interpreter used to create .venv
set -euo pipefail

MSKSEG_ROOT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

# Project-local state (same defaults as mskseg_lib/settings.py; a value already set wins).
export JUPYTER_CONFIG_DIR="${JUPYTER_CONFIG_DIR:-$MSKSEG_ROOT_DIR/.state/jupyter/config}"
export JUPYTER_DATA_DIR="${JUPYTER_DATA_DIR:-$MSKSEG_ROOT_DIR/.state/jupyter/data}"
export JUPYTER_RUNTIME_DIR="${JUPYTER_RUNTIME_DIR:-$MSKSEG_ROOT_DIR/.state/jupyter/runtime}"
export IPYTHONDIR="${IPYTHONDIR:-$MSKSEG_ROOT_DIR/.state/ipython}"
export MPLCONFIGDIR="${MPLCONFIGDIR:-$MSKSEG_ROOT_DIR/.state/matplotlib}"
export YOLO_CONFIG_DIR="${YOLO_CONFIG_DIR:-$MSKSEG_ROOT_DIR/.state/ultralytics}"
export YOLO_OFFLINE="${YOLO_OFFLINE:-1}"
# Inside a venv Jupyter searches the venv's share/jupyter first; the project's kernel spec must win.
export JUPYTER_PREFER_ENV_PATH="${JUPYTER_PREFER_ENV_PATH:-0}"
# Notebooks run from notebooks/: keep the library importable even without the editable install.
export PYTHONPATH="$MSKSEG_ROOT_DIR${PYTHONPATH:+:$PYTHONPATH}"

mskseg_requirements_hash() {
    # Hash of everything that decides what gets installed.
    local files=("$MSKSEG_ROOT_DIR/pyproject.toml" "$MSKSEG_ROOT_DIR"/requirements/*.txt)
    if command -v sha256sum >/dev/null 2>&1; then
        cat "${files[@]}" | sha256sum | cut -d' ' -f1
    else
        cat "${files[@]}" | shasum -a 256 | cut -d' ' -f1
    fi
}

mskseg_pip() {
    # Quiet pip in the project root; its full output goes to .state/pip-install.log and is
    # shown (tail) only when pip fails.
    local log="$MSKSEG_ROOT_DIR/.state/pip-install.log"
    mkdir -p "$MSKSEG_ROOT_DIR/.state"
    echo "\$ pip $*" >> "$log"
    if ! (cd "$MSKSEG_ROOT_DIR" && "$MSKSEG_ROOT_DIR/.venv/bin/python" -m pip "$@" -q >> "$log" 2>&1); then
        echo "[bootstrap] pip $* FAILED; last lines of .state/pip-install.log:" >&2
        tail -n 40 "$log" >&2
        return 1
    fi
}

mskseg_bootstrap() {
    local root="$MSKSEG_ROOT_DIR"
    local venv="$root/.venv"
    local stamp="$venv/.mskseg-installed"
    local python="${PYTHON:-python3}"
    local constraints="$root/requirements/constraints.txt"

    mkdir -p "$JUPYTER_CONFIG_DIR" "$JUPYTER_DATA_DIR" "$JUPYTER_RUNTIME_DIR" \
             "$IPYTHONDIR" "$MPLCONFIGDIR" "$YOLO_CONFIG_DIR"

    if [[ ! -x "$venv/bin/python" ]]; then
        echo "[bootstrap] creating .venv with $python ($(command -v "$python" || echo 'not found'))"
        "$python" -m venv "$venv"
    fi

    local want have=""
    want="$(mskseg_requirements_hash)"
    [[ -f "$stamp" ]] && have="$(cat "$stamp")"
    if [[ "$want" == "$have" ]]; then
        echo "[bootstrap] .venv up to date (requirements hash ${want:0:12})"
    else
        rm -f "$stamp"
        echo "[bootstrap] installing mskseg[test] with requirements/constraints.txt (log: .state/pip-install.log)"
        mskseg_pip install -c "$constraints" -e ".[test]"
        echo "[bootstrap] installing sam2==1.1.0 (SAM2_BUILD_CUDA=0, no build isolation)"
        mskseg_pip install "setuptools>=68" wheel
        SAM2_BUILD_CUDA=0 mskseg_pip install --no-build-isolation -c "$constraints" "sam2==1.1.0"
        echo "$want" > "$stamp"
        echo "[bootstrap] installed; stamp written to .venv/.mskseg-installed"
    fi

    # Kernel spec "python3" -> this venv's python, in the project-local Jupyter data dir.
    (cd "$root" && "$venv/bin/python" -c \
        'from mskseg_lib.notebook_runner import ensure_kernelspec; print("[bootstrap] jupyter kernel python3 ->", ensure_kernelspec() / "kernel.json")')
}

mskseg_bootstrap
