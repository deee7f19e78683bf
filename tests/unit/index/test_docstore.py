"""The docstore's field reads for hits (``DocStore.strings``): the fields of ``DocStore.get`` (json's
parse) for every record, titles and texts of any characters, through orjson where it reads the same."""

from __future__ import annotations

import json

import numpy as np

from lsr.index.docstore import DocStore, DocStoreWriter

TITLES = [
    "",
    "plain",
    'quote " and \\ backslash',
    "Ünïcode ✓ \u2028 北京",
    "tab\tnew\nline",
    "\x00\x1f",
    'a title holding , "text": "and more',  # the key that ends a record's head, inside a string
]


def test_strings_equal_the_fields_of_get(tmp_path):
    rng = np.random.default_rng(0)
    writer = DocStoreWriter(tmp_path)
    for i in range(60):
        title = TITLES[i % len(TITLES)] + str(rng.integers(1e9))
        metadata = {"big": 2**70 + i, "nan": float("nan"), "x": 0.1 * i} if i % 3 == 0 else None
        writer.add(f'd{i}, "text": {TITLES[i % len(TITLES)]}', title, " ".join(TITLES) * (i % 4), metadata)
    writer.close()
    store = DocStore(tmp_path)
    for i in range(len(store)):
        doc = store.get(i)
        assert store._head(i) == {"id": doc["id"], "title": doc["title"]}  # hits read the head alone
        for fields in (["title"], ["id"], ["id", "title"], ["title", "text"], ["text", "id"], ["metadata"]):
            got = store.strings(i, fields)
            assert got == {f: doc.get(f, "") for f in fields}
            assert json.dumps(got) == json.dumps({f: doc.get(f, "") for f in fields})  # int stays int
    assert isinstance(store.strings(0, ["metadata"])["metadata"]["big"], int)


def test_records_laid_out_otherwise_are_read_whole(tmp_path):
    """Lines the writer would not write (keys in another order, no text, a text key in metadata
    before the text) give the fields of ``get`` all the same."""
    records = [
        {"title": "t first", "id": "a", "text": "x"},
        {"id": "b", "title": "no text"},
        {"id": "c", "text": "text before title", "title": "late"},
        {"id": "d", "metadata": {"k": 1}, "title": "meta first", "text": "y"},
    ]
    lines = [(json.dumps(r, ensure_ascii=False) + "\n").encode() for r in records]
    (tmp_path / "docstore.jsonl").write_bytes(b"".join(lines))
    np.save(tmp_path / "docstore.offsets.npy", np.cumsum([0] + [len(line) for line in lines]))
    store = DocStore(tmp_path)
    for i, record in enumerate(records):
        assert store.strings(i, ["id", "title"]) == {"id": record["id"], "title": record.get("title", "")}
