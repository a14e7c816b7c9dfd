/**
 * This panel's version: the Python package's (jupyter_faas/_version.py) and package.json's,
 * kept equal by tests/test_panel_server.py. The panel compares it with what the Jupyter
 * server and the FaaS server run (FaaSModel.checkVersions).
 */
export const PANEL_VERSION = '0.1.0';
