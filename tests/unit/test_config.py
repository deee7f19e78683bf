"""lsr.config: defaults <- YAML <- --set overrides, validation, dump/hash."""

from __future__ import annotations

import pytest

from lsr.config import Config, config_hash, dump_yaml, load_config, resolved_impact_dtype, to_dict
from lsr.errors import ConfigError


def write(tmp_path, text: str, name: str = "cfg.yaml"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


# --- defaults and files ------------------------------------------------------------------------


def test_defaults():
    cfg = load_config()
    assert cfg == Config()
    assert cfg.encoder.name == "bm25"
    assert cfg.encoder.bm25.k1 == 1.5 and cfg.encoder.bm25.b == 0.75
    assert cfg.encoder.bm25.stemmer == "english" and cfg.encoder.bm25.stopwords == "lucene"
    assert cfg.encoder.bm25.min_length == 2 and cfg.encoder.bm25.lowercase is True
    assert cfg.encoder.shard_docs == 100_000
    assert cfg.index.impact_dtype == "auto" and cfg.index.store_docs is True
    assert (cfg.search.k, cfg.search.threads, cfg.search.batch_size) == (1000, 0, 1024)
    assert cfg.eval.split == "test" and cfg.eval.k == 1000
    assert cfg.eval.metrics == ("ndcg@10", "recall@100", "recall@1000", "mrr@10", "map")
    assert cfg.eval.relevance_level == 1 and cfg.eval.latency_queries == 0


def test_yaml_with_some_values_keeps_the_other_defaults(tmp_path):
    path = write(tmp_path, "encoder:\n  bm25:\n    k1: 1.2\nsearch:\n  k: 10\n")
    cfg = load_config(path)
    assert cfg.encoder.bm25.k1 == 1.2
    assert cfg.search.k == 10
    assert cfg.encoder.bm25.b == 0.75  # untouched
    assert cfg.search.batch_size == 1024
    assert cfg.index == Config().index and cfg.eval == Config().eval


def test_empty_yaml_file_gives_defaults(tmp_path):
    assert load_config(write(tmp_path, "# nothing here\n")) == Config()


def test_path_given_as_str(tmp_path):
    path = write(tmp_path, "search:\n  k: 7\n")
    assert load_config(str(path)).search.k == 7


def test_shipped_config_bm25_by_name():
    cfg = load_config("bm25")
    assert cfg.encoder.name == "bm25"
    assert cfg.encoder.bm25 == Config().encoder.bm25  # the defaults, restated
    assert cfg.index.impact_dtype == "float32"


def test_shipped_config_bm25_lucene_is_anserini_flat():
    bm = load_config("bm25-lucene").encoder.bm25
    assert (bm.k1, bm.b, bm.stemmer, bm.stopwords, bm.min_length) == (0.9, 0.4, "porter", "lucene", 1)


@pytest.mark.parametrize("encoder", ["bm25", "splade", "unicoil", "inference-free", "bm25+unicoil"])
def test_every_encoder_indexes_float32_impacts_by_default(encoder):
    """Exact scores with no forward index to keep; integer impacts (and their forward index) on request."""
    from lsr.pipeline import index_build_options

    options = index_build_options(load_config(None, [f"encoder.name={encoder}"]))
    assert options.impact_dtype == "float32" and not options.keeps_forward
    options = index_build_options(load_config(None, [f"encoder.name={encoder}", "index.impact_dtype=uint8"]))
    assert options.impact_dtype == "uint8" and options.keeps_forward
    assert resolved_impact_dtype("uint16") == "uint16"


def test_shipped_config_toy_by_name():
    cfg = load_config("toy")
    assert cfg.encoder.shard_docs == 64
    assert cfg.search.k == 100 and cfg.eval.k == 100
    assert cfg.encoder.bm25 == Config().encoder.bm25


def test_unknown_config_name_lists_shipped_configs():
    with pytest.raises(ConfigError) as exc:
        load_config("no-such-config")
    msg = str(exc.value)
    assert "no-such-config" in msg and "bm25" in msg and "toy" in msg


def test_invalid_yaml_is_a_config_error(tmp_path):
    path = write(tmp_path, "search: [k: 1\n")
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_config(path)


def test_yaml_top_level_must_be_a_mapping(tmp_path):
    with pytest.raises(ConfigError, match="mapping"):
        load_config(write(tmp_path, "- a\n- b\n"))


def test_yaml_section_must_be_a_mapping(tmp_path):
    with pytest.raises(ConfigError, match=r"search must be a mapping"):
        load_config(write(tmp_path, "search: 5\n"))


# --- overrides ---------------------------------------------------------------------------------


def test_override_nested_value():
    cfg = load_config(None, ["encoder.bm25.k1=1.2", "encoder.bm25.b=0.75", "search.k=10"])
    assert cfg.encoder.bm25.k1 == 1.2
    assert cfg.encoder.bm25.b == 0.75
    assert cfg.search.k == 10


def test_override_applies_on_top_of_yaml(tmp_path):
    path = write(tmp_path, "search:\n  k: 10\n  threads: 3\n")
    cfg = load_config(path, ["search.k=20"])
    assert cfg.search.k == 20 and cfg.search.threads == 3


def test_later_override_wins():
    assert load_config(None, ["search.k=10", "search.k=20"]).search.k == 20


def test_override_int_is_coerced_to_float():
    cfg = load_config(None, ["encoder.bm25.k1=1", "encoder.bm25.b=0"])
    assert cfg.encoder.bm25.k1 == 1.0 and type(cfg.encoder.bm25.k1) is float
    assert cfg.encoder.bm25.b == 0.0 and type(cfg.encoder.bm25.b) is float


def test_yaml_int_is_coerced_to_float(tmp_path):
    cfg = load_config(write(tmp_path, "encoder:\n  bm25:\n    k1: 2\n"))
    assert type(cfg.encoder.bm25.k1) is float and cfg.encoder.bm25.k1 == 2.0


def test_override_list_value():
    cfg = load_config(None, ["eval.metrics=[ndcg@10, map]"])
    assert cfg.eval.metrics == ("ndcg@10", "map")


def test_override_strings_and_bools():
    cfg = load_config(None, ["eval.split=dev", "index.store_docs=false", "index.impact_dtype=float32"])
    assert cfg.eval.split == "dev"
    assert cfg.index.store_docs is False
    assert cfg.index.impact_dtype == "float32"


def test_override_whitespace_around_key_and_value():
    assert load_config(None, [" search.k = 5"]).search.k == 5


def test_overrides_do_not_mutate_between_calls():
    load_config(None, ["search.k=5"])
    assert load_config().search.k == 1000


# --- rejections --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("override", "names"),
    [
        ("colour=red", ["colour", "encoder", "search"]),  # top level: names the key and the known ones
        ("search.kk=5", ["kk", "search", "batch_size"]),  # in a section
        ("encoder.bm25.k3=1", ["k3", "encoder.bm25", "k1"]),  # nested
    ],
)
def test_unknown_keys_are_rejected_naming_the_key(override, names):
    with pytest.raises(ConfigError) as exc:
        load_config(None, [override])
    msg = str(exc.value)
    for name in names:
        assert name in msg


def test_unknown_key_in_yaml_is_rejected(tmp_path):
    with pytest.raises(ConfigError, match="stemer"):
        load_config(write(tmp_path, "encoder:\n  bm25:\n    stemer: porter\n"))


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("search.k=abc", "search.k"),
        ("search.k=1.5", "search.k"),
        ("search.k=true", "search.k"),  # a bool is not an int
        ("search.k=null", "search.k"),
        ("index.approx_lists=1.5", "index.approx_lists"),
        ("encoder.bm25.k1=fast", "encoder.bm25.k1"),
        ("index.store_docs=1", "index.store_docs"),
        ("encoder.name=null", "encoder.name"),
        ("eval.metrics=ndcg@10", "eval.metrics"),  # a list is required
        ("eval.metrics=[ndcg@10, 5]", "eval.metrics[1]"),
        ("encoder.bm25=3", "encoder.bm25"),  # a section given a value
    ],
)
def test_wrong_types_are_rejected_naming_the_key(override, key):
    with pytest.raises(ConfigError) as exc:
        load_config(None, [override])
    assert key in str(exc.value)


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("encoder.bm25.b=1.5", "encoder.bm25.b"),
        ("encoder.bm25.b=-0.1", "encoder.bm25.b"),
        ("encoder.bm25.k1=-1", "encoder.bm25.k1"),
        ("encoder.bm25.k1=.nan", "encoder.bm25.k1"),
        ("encoder.bm25.k1=.inf", "encoder.bm25.k1"),
        ("encoder.bm25.stemmer=snowball", "encoder.bm25.stemmer"),
        ("encoder.bm25.stopwords=smart", "encoder.bm25.stopwords"),
        ("encoder.bm25.min_length=0", "encoder.bm25.min_length"),
        ("encoder.shard_docs=0", "encoder.shard_docs"),
        ("index.impact_dtype=int8", "index.impact_dtype"),
        ("search.k=0", "search.k"),
        ("index.approx_lists=-1", "index.approx_lists"),
        ("search.threads=-1", "search.threads"),
        ("search.batch_size=0", "search.batch_size"),
        ("eval.k=0", "eval.k"),
        ("eval.relevance_level=0", "eval.relevance_level"),
        ("eval.latency_queries=-1", "eval.latency_queries"),
    ],
)
def test_out_of_range_values_are_rejected_naming_the_key(override, key):
    with pytest.raises(ConfigError) as exc:
        load_config(None, [override])
    assert key in str(exc.value)


def test_pruned_lists_need_blockmax():
    with pytest.raises(ConfigError, match=r"index\.approx_lists = 100 needs index\.blockmax"):
        load_config(None, ["index.approx_lists=100", "index.blockmax=false"])
    assert load_config(None, ["index.approx_lists=100", "index.rescore=none"]).index.approx_lists == 100


def test_out_of_range_value_in_yaml_is_rejected(tmp_path):
    with pytest.raises(ConfigError, match=r"encoder\.bm25\.b"):
        load_config(write(tmp_path, "encoder:\n  bm25:\n    b: 2\n"))


def test_boundary_values_are_accepted():
    cfg = load_config(None, ["encoder.bm25.b=0", "encoder.bm25.k1=0", "search.threads=0", "search.k=1"])
    assert (cfg.encoder.bm25.b, cfg.encoder.bm25.k1, cfg.search.threads, cfg.search.k) == (0.0, 0.0, 0, 1)
    assert load_config(None, ["encoder.bm25.b=1"]).encoder.bm25.b == 1.0


@pytest.mark.parametrize("override", ["search.k", "=5", "  =5", ""])
def test_malformed_override_strings(override):
    with pytest.raises(ConfigError, match="section.key=value"):
        load_config(None, [override])


def test_override_below_a_value_is_rejected(tmp_path):
    path = write(tmp_path, "search:\n  k: 10\n")
    with pytest.raises(ConfigError, match="search.k"):
        load_config(path, ["search.k.x=1"])


def test_config_error_is_a_value_error():
    with pytest.raises(ValueError):
        load_config(None, ["search.k=0"])


# --- serialization and hash --------------------------------------------------------------------


def test_to_dict_is_plain_data():
    d = to_dict(load_config())
    assert d["encoder"]["bm25"]["k1"] == 1.5
    assert d["eval"]["metrics"] == ["ndcg@10", "recall@100", "recall@1000", "mrr@10", "map"]
    assert set(d) == {"encoder", "index", "search", "eval", "dense", "service"}


@pytest.mark.parametrize(
    ("name", "overrides"),
    [
        (None, []),
        ("toy", []),
        (None, ["encoder.bm25.k1=1.2", "eval.metrics=[map]", "index.store_docs=false", "eval.split=dev"]),
    ],
)
def test_dump_yaml_round_trip(tmp_path, name, overrides):
    cfg = load_config(name, overrides)
    path = write(tmp_path, dump_yaml(cfg), "dumped.yaml")
    again = load_config(path)
    assert again == cfg
    assert to_dict(again) == to_dict(cfg)
    assert config_hash(again) == config_hash(cfg)


def test_config_hash_is_stable_and_sensitive():
    h = config_hash(load_config())
    assert h == config_hash(load_config())
    assert isinstance(h, str) and len(h) == 16
    # bm25.yaml restates the BM25 defaults and pins float32 impacts (what auto gives bm25)
    assert config_hash(load_config("bm25")) == config_hash(load_config(None, ["index.impact_dtype=float32"]))
    changed = {
        config_hash(load_config(None, [o]))
        for o in ("encoder.bm25.k1=1.2", "search.k=10", "index.impact_dtype=uint16", "eval.metrics=[map]")
    }
    assert h not in changed and len(changed) == 4
    # an override restating a default changes nothing; an int coerced to float equals the float
    assert config_hash(load_config(None, ["encoder.bm25.b=0.75"])) == h
    assert config_hash(load_config(None, ["encoder.bm25.k1=1"])) == config_hash(
        load_config(None, ["encoder.bm25.k1=1.0"])
    )


def test_empty_yaml_section_means_defaults(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("search:\nencoder:\n  bm25:\n")
    assert load_config(path) == Config()


def test_dense_and_rerank_settings_are_checked():
    cfg = load_config(None, ["search.rerank=dense", "search.fusion=rrf", "dense.pq_m=24"])
    assert (cfg.search.rerank, cfg.search.fusion, cfg.dense.pq_m) == ("dense", "rrf", 24)
    for bad, msg in (
        ("search.rerank=cross", "not one of"),
        ("search.fusion_weight=1.5", "must lie in"),
        ("dense.pq_m=0", "must be > 0"),
        ("dense.nbits=4", "unknown key"),
    ):
        with pytest.raises(ConfigError, match=msg):
            load_config(None, [bad])


def test_approx_budget_and_reorder_settings_are_checked():
    cfg = load_config(None, ["search.mode=approx", "search.budget=2048"])
    assert (cfg.search.mode, cfg.search.budget) == ("approx", 2048)
    assert load_config().index.reorder == "auto" and load_config().search.budget == 0
    for bad, msg in (
        (["search.mode=approx", "search.budget=-1"], r"search\.budget = -1 must be >= 0"),
        (["search.mode=safe", "search.budget=100"], r"search\.budget = 100 applies to search\.mode approx"),
        (["index.reorder=kmeans"], "not one of"),
    ):
        with pytest.raises(ConfigError, match=msg):
            load_config(None, bad)


def test_ray_actors_per_gpu_is_a_positive_count_outside_the_resume_key():
    from lsr.encode import resume_key

    cfg = load_config(None, ["encoder.transformer.actors_per_gpu=4"])
    assert cfg.encoder.transformer.actors_per_gpu == 4
    # how many actors encode is not what was encoded: a resumed run may use another number
    assert resume_key(cfg, "c.jsonl") == resume_key(load_config(None, []), "c.jsonl")
    for bad in ("0", "-2"):
        with pytest.raises(ConfigError, match="actors_per_gpu"):
            load_config(None, [f"encoder.transformer.actors_per_gpu={bad}"])
