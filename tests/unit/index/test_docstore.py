"""The docstore's field reads for hits (``DocStore.strings``): the fields of ``DocStore.get`` (json's
parse) for every record, titles and texts of any characters, through orjson where it reads the same."""

from __future__ import annotations

import json

import numpy as np

from lsr.index.docstore import DocStore, DocStoreWriter

TITLES = ["", "plain", 'quote " and \\ backslash', "Ünïcode ✓ \u2028 北京", "tab\tnew\nline", "\x00\x1f"]


def test_strings_equal_the_fields_of_get(tmp_path):
    rng = np.random.default_rng(0)
    writer = DocStoreWriter(tmp_path)
    for i in range(60):
        title = TITLES[i % len(TITLES)] + str(rng.integers(1e9))
        metadata = {"big": 2**70 + i, "nan": float("nan"), "x": 0.1 * i} if i % 3 == 0 else None
        writer.add(f"d{i}", title, " ".join(TITLES) * (i % 4), metadata)
    writer.close()
    store = DocStore(tmp_path)
    for i in range(len(store)):
        doc = store.get(i)
        for fields in (["title"], ["title", "text"], ["text", "id"], ["metadata"], ["title", "missing"]):
            got = store.strings(i, fields)
            assert got == {f: doc.get(f, "") for f in fields}
            assert json.dumps(got) == json.dumps({f: doc.get(f, "") for f in fields})  # int stays int
    assert isinstance(store.strings(0, ["metadata"])["metadata"]["big"], int)
