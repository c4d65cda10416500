#!/usr/bin/env bash
# Pick the Python environment the project runs in, make it complete, point tool state into .state/.
#
# Sourced by run_all.sh, run_tests.sh and run_lab.sh; exports MSKSEG_PY (the interpreter every
# script then uses). Which environment:
#   * MSKSEG_PYTHON=/path/to/python, an active virtualenv ($VIRTUAL_ENV) or an active conda env
#     other than base ($CONDA_PREFIX): the user's own environment (a GPU box's conda env with a
#     CUDA torch). No .venv is created and nothing installed there is replaced:
#     `python -m mskseg_lib.envcheck` names the packages of requirements/lock.txt that are missing
#     (the run stops), and installs only those when MSKSEG_INSTALL_MISSING=1.
#   * otherwise the project's own .venv, installed exactly from requirements/lock.txt (every
#     package pinned, --no-deps: `pip freeze` equals the lock), the project editable, then sam2
#     (its version in requirements/constraints.txt) without build isolation and without its CUDA
#     extension (SAM2_BUILD_CUDA=0), because its build needs the torch already installed. It
#     installs only when pyproject.toml or requirements/*.txt changed since the last successful
#     install (their hash is kept in .venv/.mskseg-installed).
#
#   PYTHON=python3.11 scripts/bootstrap_env.sh     # interpreter used to create .venv
# Regenerate the lock after changing pyproject.toml or constraints.txt: scripts/lock_env.sh
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

mskseg_locked_version() {
    # The version requirements/constraints.txt pins for a package (sam2 is built apart from the lock).
    sed -n "s/^$1==\([^ #]*\).*/\1/p" "$MSKSEG_ROOT_DIR/requirements/constraints.txt" | head -n 1
}

mskseg_user_python() {
    # The interpreter of the user's own environment, or nothing (then the project's .venv).
    local own_venv
    own_venv="$(cd "$MSKSEG_ROOT_DIR/.venv" 2>/dev/null && pwd -P || true)"
    if [[ -n "${MSKSEG_PYTHON:-}" ]]; then
        echo "$MSKSEG_PYTHON"
    elif [[ -n "${VIRTUAL_ENV:-}" && "$(cd "$VIRTUAL_ENV" 2>/dev/null && pwd -P)" != "$own_venv" ]]; then
        echo "$VIRTUAL_ENV/bin/python"
    elif [[ -n "${CONDA_PREFIX:-}" && "${CONDA_DEFAULT_ENV:-base}" != "base" ]]; then
        echo "$CONDA_PREFIX/bin/python"
    fi
}

mskseg_bootstrap() {
    local root="$MSKSEG_ROOT_DIR"
    local venv="$root/.venv"
    local stamp="$venv/.mskseg-installed"
    local python="${PYTHON:-python3}"
    local lock="$root/requirements/lock.txt"

    mkdir -p "$JUPYTER_CONFIG_DIR" "$JUPYTER_DATA_DIR" "$JUPYTER_RUNTIME_DIR" \
             "$IPYTHONDIR" "$MPLCONFIGDIR" "$YOLO_CONFIG_DIR"

    local user_py
    user_py="$(mskseg_user_python)"
    if [[ -n "$user_py" ]]; then
        if [[ ! -x "$user_py" ]]; then
            echo "[bootstrap] error: $user_py is not an executable Python (MSKSEG_PYTHON / active environment)" >&2
            return 1
        fi
        export MSKSEG_PY="$user_py"
        echo "[bootstrap] using your environment: $MSKSEG_PY (no .venv; nothing installed there is replaced)"
        local install=()
        [[ "${MSKSEG_INSTALL_MISSING:-0}" == "1" ]] && install=(--install)
        (cd "$root" && "$MSKSEG_PY" -m mskseg_lib.envcheck --lock "$lock" ${install[@]+"${install[@]}"})
    else
        export MSKSEG_PY="$venv/bin/python"
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
            echo "[bootstrap] installing requirements/lock.txt into .venv, exactly (log: .state/pip-install.log)"
            mskseg_pip install --no-deps -r "$lock"
            mskseg_pip install --no-deps --no-build-isolation -e .
            local sam2
            sam2="$(mskseg_locked_version sam2)"
            echo "[bootstrap] installing sam2==$sam2 (SAM2_BUILD_CUDA=0, no build isolation)"
            SAM2_BUILD_CUDA=0 mskseg_pip install --no-deps --no-build-isolation "sam2==$sam2"
            echo "$want" > "$stamp"
            echo "[bootstrap] installed; stamp written to .venv/.mskseg-installed"
        fi
    fi

    # Kernel spec "python3" -> this environment's python, in the project-local Jupyter data dir.
    (cd "$root" && "$MSKSEG_PY" -c \
        'from mskseg_lib.notebook_runner import ensure_kernelspec; print("[bootstrap] jupyter kernel python3 ->", ensure_kernelspec() / "kernel.json")')
}

mskseg_bootstrap
