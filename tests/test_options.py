"""Engine options from anywhere (issuelab.toml, `--set ENGINE.KEY=VALUE`, a saved run) are checked by the
engine's own Options dataclass, with errors that name the key and suggest the closest."""

from __future__ import annotations

import json
import tomllib
from dataclasses import asdict

import pytest

from issuelab.config import parse_config, with_engine_settings
from issuelab.data import write_jsonl
from issuelab.engines.registry import create_engine, option_names
from issuelab.engines.tfidf import TfidfOptions
from issuelab.errors import ConfigError
from issuelab.options import options_from_json, parse_setting

from .helpers import TOY_CONFIG, make_issues


def test_settings_parse_json_values_else_keep_strings():
    assert parse_setting("tfidf.C=3") == ("tfidf.C", 3)
    assert parse_setting("tfidf.word_ngrams=[1, 3]") == ("tfidf.word_ngrams", [1, 3])
    assert parse_setting("lora.rslora=false") == ("lora.rslora", False)
    assert parse_setting("lora.base_model=/models/gemma=3") == ("lora.base_model", "/models/gemma=3")
    with pytest.raises(ConfigError, match="expected KEY=VALUE"):
        parse_setting("tfidf.C")


def test_engine_settings_are_checked_by_the_engine_and_leave_the_config_alone():
    config = parse_config(tomllib.loads(TOY_CONFIG + "\n[train.tfidf]\nC = 3\n"))
    changed = with_engine_settings(config, [("tfidf.word_ngrams", [1, 3]), ("min_df", 1)], engine="tfidf")
    assert changed.engine_options("tfidf") == {"C": 3, "word_ngrams": [1, 3], "min_df": 1}
    assert config.engine_options("tfidf") == {"C": 3}  # a copy: the loaded config is unchanged
    assert create_engine("tfidf", changed.engine_options("tfidf")).options.word_ngrams == (1, 3)
    for setting, message in [
        (("tfidf.Cc", 1), "--set tfidf: unknown key 'Cc'. Did you mean 'C'?"),
        (("tfidf.C", "high"), "--set tfidf.C: expected float"),
        (("tfidf.word_ngrams", [3, 1]), "word_ngrams must be"),
        (("tfidff.C", 1), "ENGINE one of tfidf, lora"),
        (("C", 1), "expected ENGINE.KEY=VALUE"),  # no engine to give a bare key to
    ]:
        with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace(".", r"\.")):
            with_engine_settings(config, [setting])


def test_saved_options_load_back_as_they_were():
    options = TfidfOptions(word_ngrams=(1, 3), C=2.0)
    assert options_from_json(TfidfOptions, json.loads(json.dumps(asdict(options)))) == options
    assert {"C", "word_ngrams", "class_weight"} <= option_names("tfidf")


def test_cli_set_reaches_the_run_and_typos_stop_it_first(cli, toy_config, tmp_path):
    write_jsonl(tmp_path / "train.jsonl", make_issues(80))
    code, _, err = cli("train", "--config", toy_config, "--train", tmp_path / "train.jsonl", "--out", tmp_path / "run",
                       "--set", "tfidf.C=0.5", "--set", "min_df=1")  # fmt: skip
    assert code == 0, err
    options = json.loads((tmp_path / "run/manifest.json").read_text())["engine_options"]
    assert options["C"] == 0.5 and options["min_df"] == 1
    code, _, err = cli("train", "--config", toy_config, "--train", tmp_path / "train.jsonl", "--out", tmp_path / "r2",
                       "--set", "tfidf.Cc=0.5")  # fmt: skip
    assert code == 2 and "Did you mean 'C'?" in err and not (tmp_path / "r2").exists()
    code, _, err = cli("crossval", "--config", toy_config, "--data", tmp_path / "train.jsonl", "--set", "max_chars=x")
    assert code == 2 and "--set tfidf.max_chars: expected int" in err
