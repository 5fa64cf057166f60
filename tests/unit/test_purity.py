"""translators/ is pure: importing all of it pulls in no HTTP, Redis or Kubernetes client."""

from __future__ import annotations

import subprocess
import sys

FORBIDDEN = ("aiohttp", "redis", "kubernetes_asyncio", "kubernetes", "requests", "httpx", "socket", "asyncio")


def test_translators_import_no_io_libraries() -> None:
    probe = (
        "import sys\n"
        "import translators.backends, translators.clever, translators.labels, translators.naming\n"
        "import translators.podtemplate, translators.quantity, translators.spec, translators.status\n"
        "import translators.backends.base, translators.backends.registry, translators.backends.tfjob\n"
        "import translators.backends.training_operator, translators.backends.tf_operator\n"
        "import translators.backends.volcano, translators.backends.jobset\n"
        f"print(','.join(m for m in {FORBIDDEN!r} if m in sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == ""
