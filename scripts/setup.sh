#!/usr/bin/env bash
# Create .venv (once) and install jupyter_faas into it, editable, with the given extras.
# The install builds the side panel (labextension/, needs node + npm on this machine only).
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-notebook}"
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
  .venv/bin/python -m pip install -q --upgrade pip
fi
# The build hook runs jlpm from the build environment; jlpm needs the venv's node tools on PATH.
PATH="$PWD/.venv/bin:$PATH" .venv/bin/python -m pip install -q -e ".[${extras}]" 2>&1 \
  | grep -v "^WARNING: Location" || true
# An editable install copies the built panel; link it instead so a rebuild shows up at once.
PATH="$PWD/.venv/bin:$PATH" .venv/bin/jupyter-builder develop --overwrite . >/dev/null
.venv/bin/python -c "import jupyter_faas, nbclient" >/dev/null
test -f jupyter_faas/labextension/static/style.js || { echo "the side panel was not built" >&2; exit 1; }
