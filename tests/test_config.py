"""Config: every precedence level, per-key merges, unknown keys, drift, shipped configs."""

from __future__ import annotations

import json

import pytest
import yaml

from finsight.config import Settings, all_keys, default_yaml, load_settings
from finsight.errors import ConfigError
from tests.conftest import REPO_ROOT

CONFIGS = sorted((REPO_ROOT / "configs").glob("*.yaml"))


def _write(path, tree):
    path.write_text(yaml.safe_dump(tree))
    return path


def test_defaults_have_the_documented_keys():
    s = load_settings()
    assert s.model.name_or_path == "ProsusAI/finbert"
    assert s.model.max_length == 64
    assert s.predict.backend == "auto"
    assert str(s.workdir) == "finsight-work"
    for key in ("train.learning_rate", "train.max_epochs", "train.batch_size", "train.seed",
                "registry.tracking_uri", "predict.batch_size", "serve.host", "serve.port"):
        assert key in all_keys()
    assert set(s.sources.values()) == {"default"}


def test_every_field_is_documented():
    from finsight.config import field_info

    for key in all_keys():
        assert field_info(key).description, f"{key} has no description"


def test_precedence_default_file_env_set_flag(tmp_path, monkeypatch):
    cfg = _write(tmp_path / "c.yaml", {"train": {"learning_rate": 1e-3, "batch_size": 8,
                                                 "max_epochs": 9, "seed": 5}})
    s = load_settings(cfg)
    assert (s.train.learning_rate, s.sources["train.learning_rate"]) == (1e-3, "file")

    monkeypatch.setenv("FINSIGHT_TRAIN__LEARNING_RATE", "1e-4")
    monkeypatch.setenv("FINSIGHT_TRAIN__BATCH_SIZE", "4")
    s = load_settings(cfg)
    assert (s.train.learning_rate, s.sources["train.learning_rate"]) == (1e-4, "env")

    s = load_settings(cfg, ["train.learning_rate=3e-5", "train.seed=11"])
    assert (s.train.learning_rate, s.sources["train.learning_rate"]) == (3e-5, "cli")

    s = load_settings(cfg, ["train.learning_rate=3e-5"], flags={"train.learning_rate": 5e-5,
                                                                 "train.seed": None})
    assert s.train.learning_rate == 5e-5
    # per-key merge: the other train keys keep the value of their own highest layer
    assert (s.train.batch_size, s.sources["train.batch_size"]) == (4, "env")
    assert (s.train.max_epochs, s.sources["train.max_epochs"]) == (9, "file")
    assert (s.train.seed, s.sources["train.seed"]) == (5, "file")  # None flag = not given
    assert (s.train.warmup_ratio, s.sources["train.warmup_ratio"]) == (0.2, "default")


def test_config_file_from_env_variable(tmp_path, monkeypatch):
    cfg = _write(tmp_path / "c.yaml", {"serve": {"port": 9123}})
    monkeypatch.setenv("FINSIGHT_CONFIG", str(cfg))
    s = load_settings()
    assert (s.serve.port, s.sources["serve.port"]) == (9123, "file")


def test_set_values_are_yaml_scalars_never_evaluated():
    s = load_settings(None, ["data.label_map={0: negative}",
                                                          "train.gradient_clip_val=null",
                                                          "data.keep_columns=[id, ticker]",
                                                          "registry.experiment=__import__('os')"])
    assert s.data.label_map == {"0": "negative"}
    assert s.train.gradient_clip_val is None
    assert s.data.keep_columns == ["id", "ticker"]
    assert s.registry.experiment == "__import__('os')"


def test_env_lists_and_dicts_are_json(monkeypatch):
    monkeypatch.setenv("FINSIGHT_PREDICT__GROUP_BY", '["ticker", "date"]')
    assert load_settings().analyze.group_by == ["ticker", "date"]


@pytest.mark.parametrize("override, named", [
    ("trian.learning_rate=1", "train.learning_rate"),
    ("train.learnig_rate=1", "train.learning_rate"),
    ("model.max_lenght=12", "model.max_length"),
])
def test_unknown_keys_suggest_close_matches(override, named):
    with pytest.raises(ConfigError, match=named.replace(".", r"\.")):
        load_settings(overrides=[override])


def test_unknown_key_in_file_and_env(tmp_path, monkeypatch):
    cfg = _write(tmp_path / "c.yaml", {"predict": {"batchsize": 3}})
    with pytest.raises(ConfigError, match=r"predict\.batchsize.*c\.yaml.*predict\.batch_size"):
        load_settings(cfg)
    monkeypatch.setenv("FINSIGHT_SERVE__PROT", "1")
    with pytest.raises(ConfigError, match=r"FINSIGHT_SERVE__PROT.*serve\.port"):
        load_settings()


def test_bad_values_name_the_key_and_the_source(tmp_path, monkeypatch):
    with pytest.raises(ConfigError, match=r"train\.learning_rate.*--set"):
        load_settings(overrides=["train.learning_rate=abc"])
    with pytest.raises(ConfigError, match=r"predict\.backend"):
        load_settings(overrides=["predict.backend=tensorflow"])
    monkeypatch.setenv("FINSIGHT_SERVE__PORT", "http")
    with pytest.raises(ConfigError, match=r"serve\.port.*FINSIGHT_SERVE__PORT"):
        load_settings()


def test_bad_files(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_settings(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_settings(bad)
    listing = tmp_path / "list.yaml"
    listing.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_settings(listing)
    with pytest.raises(ConfigError, match="'train' .*section"):
        load_settings(overrides=["train=3"])
    with pytest.raises(ConfigError, match="section.key=value"):
        load_settings(overrides=["train.seed"])


def test_default_yaml_matches_the_settings_model():
    shipped = (REPO_ROOT / "configs" / "default.yaml").read_text()
    assert shipped == default_yaml(), (
        "configs/default.yaml drifted from finsight/config.py; "
        "regenerate it with `finsight config init configs/default.yaml --force`")
    tree = yaml.safe_load(shipped)
    assert Settings.model_validate(tree) == Settings.model_validate({})
    for key in all_keys():
        head, _, tail = key.partition(".")
        assert (tail in tree[head]) if tail else (head in tree), key


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_every_shipped_config_loads(path):
    s = load_settings(path)
    assert any(src == "file" for src in s.sources.values()) or path.name == "default.yaml"
    json.dumps(s.model_dump(mode="json"))


def test_shipped_configs_exist():
    assert {"default.yaml", "tiny.yaml", "finbert.yaml", "quickstart.yaml"} <= {p.name for p in CONFIGS}


def test_renamed_predict_keys_keep_working_with_a_warning(tmp_path, monkeypatch):
    cfg = _write(tmp_path / "c.yaml", {"predict": {"mode": "document", "batch_size": 16}})
    monkeypatch.setenv("FINSIGHT_PREDICT__GROUP_BY", '["ticker"]')
    s = load_settings(cfg, ["predict.out=x.csv"])
    assert (s.analyze.mode, s.analyze.group_by, str(s.analyze.out)) == ("document", ["ticker"], "x.csv")
    assert s.predict.batch_size == 16  # a predictor key stays where it is
    assert (s.sources["analyze.mode"], s.sources["analyze.group_by"], s.sources["analyze.out"]) == (
        "file", "env", "cli")
    notes = "\n".join(s.deprecations)
    for old in ("predict.mode", "predict.group_by", "predict.out"):
        assert f"'{old}' is deprecated: it is now 'analyze.{old.split('.')[1]}'" in notes
    assert "predict.batch_size" not in notes
    # the new name wins over the old one when both are given at the same layer or above
    assert load_settings(cfg, ["analyze.mode=sentence"]).analyze.mode == "sentence"


def test_config_show_explains_a_key_and_a_deprecated_key(cli):
    shown = cli("config", "show", "predict.mode")
    assert shown.exit_code == 0, shown.stderr
    assert "'predict.mode' is deprecated: it is now 'analyze.mode'" in " ".join(shown.stdout.split())
    one = cli("--set", "predict.chunk_rows=64", "config", "show", "analyze.chunk_rows", "--json")
    assert one.exit_code == 0
    assert json.loads(one.stdout) == {"values": {"analyze.chunk_rows": 64}, "sources": {"analyze.chunk_rows": "cli"}}
    assert "deprecated" in one.stderr
    unknown = cli("config", "show", "predict.moode")
    assert unknown.exit_code == 1 and "did you mean 'predict.model'" in unknown.stderr
