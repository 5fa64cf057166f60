"""Pure Clever ⇄ Kubernetes translation: legacy bodies, cluster bodies for every backend, status.

No I/O and no HTTP, Redis or Kubernetes client imports anywhere in this package. The gateway
calls `translators.clever` (read/render the legacy API), `translators.naming` (names,
namespaces) and `translators.backends` (one module per backend behind the `JobBackend` protocol,
the registry, and facades for cluster bodies, patches, status, selectors).
"""
