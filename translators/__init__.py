"""Pure Clever ⇄ Kubernetes translation: legacy bodies, TFJob / Volcano Job bodies, status.

No I/O and no HTTP, Redis or Kubernetes client imports anywhere in this package. The gateway
calls `translators.clever` (read/render the legacy API), `translators.naming` (names,
namespaces) and `translators.backends` (cluster bodies, patches, status, selectors).
"""
