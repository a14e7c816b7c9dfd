"""What ``pip install jupyter_faas`` brings: the cell widgets' needs, not the test and bench tools."""

from __future__ import annotations

import re
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: the same parser, from PyPI (the test extra has it)
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent


def requirements(specs: list[str]) -> dict[str, str]:
    out = {}
    for spec in specs:
        name, rest = re.match(r"([A-Za-z0-9_.\-]+)(?:\[[^\]]*\])?(.*)", spec).groups()
        out[name.lower().replace("_", "-")] = rest.strip()
    return out


def test_a_plain_install_brings_the_widgets_and_the_kernel_with_subshells():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    base = requirements(project["dependencies"])
    assert "ipywidgets" in base
    # ipykernel 7 has the subshell the widgets' buttons need while a cell blocks.
    assert set(base["ipykernel"].split(",")) == {">=7.0", "<8"}
    heavy = {"jupyterlab", "nbclient", "pytest", "pytest-timeout", "numpy", "playwright", "dask",
             "ray", "ipyparallel", "loky"}
    assert not heavy & set(base), heavy & set(base)
    for extra, specs in project["optional-dependencies"].items():
        assert not {"ipywidgets", "ipykernel"} & set(requirements(specs)), extra
