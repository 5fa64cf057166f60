#!/bin/sh
# Builds the virtualenv the image ships. deploy/Dockerfile runs it, and tests/deploy/test_image.py runs the
# very same steps on the test machine, so what the image installs is tested without a Docker engine.
#
#   build-venv.sh deps VENV       create VENV (no pip in it) and install deploy/requirements.lock into it:
#                                 hash-checked, wheels only, no dependency resolution
#   build-venv.sh app VENV SRC    build the project's wheel from SRC with the locked build backend
#                                 (deploy/requirements-build.lock), install it into VENV without
#                                 dependencies, then `pip check` VENV: pyproject's pins must be what
#                                 the lock installed
#
# $PYTHON (default python3) is the interpreter the venv is made from; its pip (>= 22.3, for --python)
# installs into the venv from outside.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
python=${PYTHON:-python3}
step=${1:?usage: build-venv.sh deps VENV | app VENV SRC}
venv=${2:?usage: build-venv.sh deps VENV | app VENV SRC}
pip_into_venv() { "$python" -m pip --python "$venv/bin/python" "$@"; }

case "$step" in
  deps)
    "$python" -m venv --without-pip "$venv"
    pip_into_venv install --no-deps --require-hashes --only-binary=:all: \
      -r "$here/requirements.lock"
    ;;
  app)
    src=${3:?usage: build-venv.sh app VENV SRC}
    work=$(mktemp -d)
    "$python" -m venv "$work/build"
    "$work/build/bin/python" -m pip install --no-deps --require-hashes --only-binary=:all: \
      -r "$here/requirements-build.lock"
    "$work/build/bin/python" -m pip wheel --no-deps --no-build-isolation \
      --wheel-dir "$work/wheels" "$src"
    pip_into_venv install --no-deps --no-index "$work"/wheels/*.whl
    pip_into_venv check
    rm -rf "$work"
    ;;
  *)
    echo "build-venv.sh: unknown step $step (deps or app)" >&2
    exit 2
    ;;
esac
