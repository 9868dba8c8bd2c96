#!/usr/bin/env bash
# Installs the Python tools the tests use into target/tools/py (a virtual
# environment, made once): openapi-spec-validator, which checks the OpenAPI
# documents the host generates. Prints nothing when they are there.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=target/tools/py
want="openapi-spec-validator==0.7.2"
if [[ -x $venv/bin/openapi-spec-validator ]] && grep -qx "$want" "$venv/.installed" 2>/dev/null; then
    exit 0
fi
echo "pytools.sh: installing $want into $venv" >&2
python3 -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check "$want"
echo "$want" >"$venv/.installed"
