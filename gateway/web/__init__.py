"""The HTTP surface: routes, thin handlers, middlewares (the one error → HTTP mapping), request bodies,
and the server that answers protocol errors in the legacy shape."""
