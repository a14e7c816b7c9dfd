#!/usr/bin/env bash
# The main job: set up, then run notebooks/quickstart.ipynb headless and print what it did.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh notebook
.venv/bin/python scripts/run_notebook.py notebooks/quickstart.ipynb
cat <<'TXT'

To open it in JupyterLab:
    .venv/bin/jupyter lab notebooks/quickstart.ipynb
The FaaS server the notebook started keeps running in the background for your kernels;
stop it with:  .venv/bin/jupyter faas stop
TXT
