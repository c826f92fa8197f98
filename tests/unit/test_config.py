import json

import pytest

from lmlab.config import Config, ConfigError, apply_overrides, load_config_file
from lmlab.nn import TinyConfig
from lmlab.studies.two_hop import TwoHopStudyConfig
from lmlab.train import TrainConfig


def test_round_trip():
    cfg = TwoHopStudyConfig()
    assert TwoHopStudyConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg


def test_overrides_nested_and_typed():
    cfg = apply_overrides(TwoHopStudyConfig(), ["model.d_model=128", "train.lr=0.002", "seed=7", "train.betas=[0.9,0.95]"])
    assert cfg.model.d_model == 128 and cfg.train.lr == 0.002 and cfg.seed == 7 and cfg.train.betas == (0.9, 0.95)


def test_unknown_key_suggests_fix():
    with pytest.raises(ConfigError, match=r"unknown config key 'model.d_modle'.*did you mean 'd_model'"):
        apply_overrides(TwoHopStudyConfig(), ["model.d_modle=3"])


def test_wrong_type_names_field():
    with pytest.raises(ConfigError, match=r"train.lr: expects a number, got 'fast'"):
        apply_overrides(TwoHopStudyConfig(), ["train.lr=fast"])
    with pytest.raises(ConfigError, match=r"model.layer_norm: expects true or false"):
        apply_overrides(TwoHopStudyConfig(), ["model.layer_norm=maybe"])


def test_impossible_sizes():
    with pytest.raises(ConfigError, match=r"d_model \(65\) must be divisible by n_heads \(2\)"):
        apply_overrides(TwoHopStudyConfig(), ["model.d_model=65", "model.n_heads=2"])
    with pytest.raises(ConfigError, match=r"n_entities \(10\) must be >= 3 \* n_chains \(15\)"):
        apply_overrides(TwoHopStudyConfig(), ["task.n_entities=10"])


def test_override_without_equals():
    with pytest.raises(ConfigError, match="must look like key=value"):
        apply_overrides(TrainConfig(), ["lr"])


def test_literal_choices_listed():
    with pytest.raises(ConfigError, match="choose one of 'adamw', 'adam', 'sgd'"):
        TrainConfig(optimizer="lion")


def test_config_file_errors(tmp_path):
    bad = tmp_path / "c.json"
    bad.write_text("{not json")
    with pytest.raises(ConfigError, match="not valid JSON: line 1"):
        load_config_file(TinyConfig, bad)
    bad.write_text(json.dumps({"d_model": 64, "n_layer": 2}))
    with pytest.raises(ConfigError, match=r"c.json: unknown config key 'n_layer'.*did you mean 'n_layers'"):
        load_config_file(TinyConfig, bad)
    with pytest.raises(ConfigError, match="does not exist"):
        load_config_file(TinyConfig, tmp_path / "missing.json")


def test_frozen():
    with pytest.raises(Exception):
        TinyConfig().d_model = 3  # type: ignore[misc]


def test_dotted_override_descends_into_an_optional_section():
    import dataclasses as dc
    from typing import Optional

    from lmlab.nn import TinyConfig

    @dc.dataclass(frozen=True)
    class Outer(Config):
        probe: Optional[TinyConfig] = None
        main: TinyConfig = dc.field(default_factory=TinyConfig)

    with_probe = apply_overrides(Outer(probe=TinyConfig()), ["probe.d_model=32"])
    assert with_probe.probe.d_model == 32
    with pytest.raises(ConfigError, match="section 'probe' is null"):
        apply_overrides(Outer(), ["probe.d_model=32"])
    assert apply_overrides(Outer(), ['probe={"d_model": 16}']).probe.d_model == 16
