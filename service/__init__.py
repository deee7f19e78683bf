"""lsr.service: the REST search service (FastAPI, behind the ``serve`` extra).

Not built yet: the ``lsr serve`` command and its endpoints arrive with the
service issue. The package exists so the layout and the import direction
(index <- lsr <- service) are fixed from the start.
"""
