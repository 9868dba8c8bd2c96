#!/usr/bin/env bash
# Installs the Python tools the tests use into target/tools/py (a virtual
# environment, made once): openapi-spec-validator, which checks the OpenAPI
# documents the host generates, and schemathesis, which tests a running host
# against them. Prints nothing when they are there.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=target/tools/py
want="openapi-spec-validator==0.7.2 schemathesis==4.32.5"
if [[ -x $venv/bin/st ]] && grep -qxF "$want" "$venv/.installed" 2>/dev/null; then
    exit 0
fi
echo "pytools.sh: installing $want into $venv" >&2
python3 -m venv "$venv"
# shellcheck disable=SC2086 # one word per package
"$venv/bin/pip" install --quiet --disable-pip-version-check $want
echo "$want" >"$venv/.installed"
