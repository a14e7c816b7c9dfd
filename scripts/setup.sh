#!/usr/bin/env bash
# Create .venv (once) and install jupyter_faas into it, editable, with the given extras.
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-notebook}"
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
  .venv/bin/python -m pip install -q --upgrade pip
fi
.venv/bin/python -m pip install -q -e ".[${extras}]" 2>&1 | grep -v "^WARNING: Location" || true
.venv/bin/python -c "import jupyter_faas, nbclient" >/dev/null
