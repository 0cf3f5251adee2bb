import pytest

from conf import ConfigError, load_settings
from conf.loader import env_overrides


def test_base_and_local_profile_load_with_defaults():
    s = load_settings(env="local", environ={})
    assert s.env == "local"
    assert s.spark.master == "local[2]"  # local.yaml overrides base.yaml's local[*]
    assert s.matrix.event_weights["purchase"] == 5.0


def test_environment_overrides_top_level_and_nested_keys(tmp_path):
    s = load_settings(environ={"RECPIPE_LAKE_ROOT": str(tmp_path), "RECPIPE_ALS__FACTORS": "64",
                               "RECPIPE_ENV": "local"})
    assert s.lake_root == str(tmp_path)
    assert s.als.factors == 64


def test_env_variable_chooses_profile():
    s = load_settings(environ={"RECPIPE_ENV": "cluster"})
    assert s.env == "cluster"
    assert s.spark.master == "yarn"
    assert s.lake_path("gold", "x").startswith("s3a://")


def test_invalid_value_names_the_key():
    with pytest.raises(ConfigError, match=r"als\.factors"):
        load_settings(environ={"RECPIPE_ALS__FACTORS": "-3"})


def test_unknown_key_names_the_key():
    with pytest.raises(ConfigError, match=r"als\.factorz"):
        load_settings(overrides={"als": {"factorz": 3}}, environ={})


def test_missing_profile_file_is_a_clear_error():
    with pytest.raises(ConfigError, match="nosuchenv.yaml"):
        load_settings(env="nosuchenv", environ={})


def test_env_overrides_parse_yaml_scalars():
    out = env_overrides({"RECPIPE_A__B": "true", "RECPIPE_C": "1.5", "OTHER": "x",
                         "RECPIPE_ENV": "local"})
    assert out == {"a": {"b": True}, "c": 1.5}


def test_relative_paths_resolve_from_project_root_not_cwd(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    s = load_settings(overrides={"lake_root": "var/lake"}, environ={})
    assert not s.lake_path("t").startswith(str(tmp_path))
    assert s.lake_path("t").endswith("/var/lake/t")
