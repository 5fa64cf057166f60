"""kubesim: a local Kubernetes API server (real HTTPS, bearer token) with simulated TFJob, Volcano and JobSet
controllers.

`from kubesim import KubeSim` gives the in-process fixture (see kubesim.testing); `python -m kubesim` runs it
standalone. The store contract lives in kubesim.store, errors in kubesim.errors.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kubesim.testing import KubeSim


def __getattr__(name: str) -> Any:
    # Lazy so that importing kubesim.store (controllers, translators' tests) does not pull in aiohttp.
    if name == "KubeSim":
        from kubesim.testing import KubeSim
        return KubeSim
    raise AttributeError(name)


__all__ = ["KubeSim"]
