"""The app configuration: presets load, bad values name their field, demo limits hold."""

from __future__ import annotations

from pathlib import Path

import pytest

from explorer.config import DEMO, LOCAL, config_path, current_config, load_config, parse_config
from explorer.errors import BadConfig

ROOT = Path(__file__).resolve().parent.parent


def test_presets_load_and_match_the_built_in_ones():
    local = load_config(ROOT / "config" / "local.toml")
    demo = load_config(ROOT / "config" / "demo.toml")
    assert local == LOCAL and demo == DEMO
    assert demo.demo and not demo.allow_local_paths and not demo.allow_uploads


@pytest.mark.parametrize(
    "data, field",
    [
        ({"max_prompt_tokens": "many"}, "max_prompt_tokens"),
        ({"max_prompt_tokens": 0}, "max_prompt_tokens"),
        ({"max_prompt_tokens": True}, "max_prompt_tokens"),
        ({"demo": "yes"}, "demo"),
        ({"models": []}, "models"),
        ({"models": ["a", 3]}, "models"),
        ({"default_model": "gpt2", "models": ["smollm2-135m"]}, "default_model"),
        ({"device": "tpu"}, "device"),
        ({"dtype": "int8"}, "dtype"),
        ({"demo": True, "allow_uploads": True}, "demo"),  # demo = true alone takes demo mode's limits (below)
        ({"demo": True, "allow_local_paths": True}, "demo"),
        ({"device": "cuda:banana"}, "device"),
        ({"device": "cuda:²"}, "device"),
        ({"device": "meta"}, "device"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_bad_values_name_the_field(data, field):
    with pytest.raises(BadConfig, match=field):
        parse_config(data)


def test_bad_files(tmp_path):
    with pytest.raises(BadConfig, match="no configuration file"):
        load_config(tmp_path / "none.toml")
    (tmp_path / "bad.toml").write_text("models = [\n")
    with pytest.raises(BadConfig, match="not valid TOML"):
        load_config(tmp_path / "bad.toml")


def test_config_path_from_arguments_or_environment(monkeypatch, tmp_path):
    monkeypatch.delenv("STRACE_CONFIG", raising=False)
    assert config_path([]) is None and current_config([]) == LOCAL
    assert config_path(["--config", "x.toml"]) == "x.toml" and config_path(["--config=y.toml"]) == "y.toml"
    monkeypatch.setenv("STRACE_CONFIG", str(ROOT / "config" / "demo.toml"))
    assert current_config([]) == DEMO


def test_demo_refuses_other_models_and_local_paths(tmp_path):
    DEMO.check_model("smollm2-135m")
    with pytest.raises(BadConfig, match="only these models"):
        DEMO.check_model("gpt2")
    with pytest.raises(BadConfig, match="only these models"):
        DEMO.check_model(str(tmp_path))
    LOCAL.check_model(str(tmp_path))
    no_paths = parse_config({"allow_local_paths": False})
    with pytest.raises(BadConfig, match="local folders"):
        no_paths.check_model(str(tmp_path))
    no_paths.check_model("org/some-model")


def test_a_folder_is_not_a_configuration_file(tmp_path):
    with pytest.raises(BadConfig, match="is a folder, not a configuration file"):
        load_config(tmp_path)


def test_demo_alone_takes_demo_modes_limits_unless_the_file_sets_them(tmp_path):
    (tmp_path / "d.toml").write_text("demo = true\n")
    demo = load_config(tmp_path / "d.toml")
    assert demo == DEMO and demo.source == str(tmp_path / "d.toml")
    assert demo.models == ("smollm2-135m", "gemma3-270m") and demo.max_prompt_tokens == 64
    assert demo.corpus_max_prompts == 10 and not (demo.allow_local_paths or demo.allow_uploads)
    assert not demo.allow_other_models and not demo.trust_remote_code
    tuned = parse_config({"demo": True, "max_prompt_tokens": 128, "models": ["smollm2-135m"]})
    assert tuned.max_prompt_tokens == 128 and tuned.models == ("smollm2-135m",) and tuned.corpus_max_prompts == 10
    assert parse_config({"demo": False}) == LOCAL
