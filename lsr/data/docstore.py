"""The docstore, re-exported from :mod:`lsr.index.docstore` (the index's segments write it too)."""

from lsr.index.docstore import DOCSTORE_FILE, OFFSETS_FILE, ORDER_FILE, DocStore, DocStoreWriter

__all__ = ["DOCSTORE_FILE", "OFFSETS_FILE", "ORDER_FILE", "DocStore", "DocStoreWriter"]
