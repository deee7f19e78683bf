"""lsr.service: the REST search service (FastAPI under uvicorn, behind the ``serve`` extra).

``create_app(settings)`` (``lsr.service.app``) builds the app, ``serve(settings)`` runs it (``lsr serve``),
the ``service`` config section (``lsr.config.ServiceConfig``) holds indexes, limits, API key and CORS,
``Metrics``
(``lsr.service.metrics``) the per-app Prometheus registry, and ``python -m lsr.service.load`` is the
load test. Nothing here is imported by ``lsr`` itself except, lazily, ``lsr.cli``.
"""
