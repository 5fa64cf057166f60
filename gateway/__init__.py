"""clever-gateway: serves Clever's legacy tfjob-admin API over Kubeflow TFJobs / Volcano Jobs.

Entry points: `gateway.app.create_app(settings)`, `gateway.config.load_settings(path)`, and the
`clever-gateway` console script (`gateway.cli:main`).
"""

from gateway.version import VERSION as __version__

__all__ = ["__version__"]
