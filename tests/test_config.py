"""Profiles: the shipped ones validate; schema violations name the file and the dotted key."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from mskseg_lib.config import ProfileError, load_profile, params_dir

SHIPPED = ["fixture", "default", "paper"]


def _fixture_dict() -> dict:
    return yaml.safe_load((params_dir() / "fixture.yaml").read_text())


def _write(tmp_path: Path, cfg: dict, name: str = "broken.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_profiles_validate(name: str) -> None:
    cfg = load_profile(name)
    assert cfg["profile"] == name


def test_unknown_key_names_file_and_dotted_key(tmp_path: Path) -> None:
    cfg = _fixture_dict()
    cfg["cohort"]["subject_per_dataset"] = 3  # typo
    path = _write(tmp_path, cfg)
    with pytest.raises(ProfileError) as err:
        load_profile(path)
    assert str(path) in str(err.value)
    assert "cohort.subject_per_dataset" in str(err.value)
    assert "unknown key" in str(err.value)


def test_missing_key_names_file_and_dotted_key(tmp_path: Path) -> None:
    cfg = _fixture_dict()
    del cfg["prepare"]["min_component_px"]
    path = _write(tmp_path, cfg)
    with pytest.raises(ProfileError, match=r"missing key 'prepare\.min_component_px'") as err:
        load_profile(path)
    assert str(path) in str(err.value)


def test_wrong_type_names_file_and_dotted_key(tmp_path: Path) -> None:
    cfg = _fixture_dict()
    cfg["cohort"]["subjects_per_dataset"] = "four"
    path = _write(tmp_path, cfg)
    with pytest.raises(ProfileError, match=r"'cohort\.subjects_per_dataset' must be int") as err:
        load_profile(path)
    assert str(path) in str(err.value)


def test_bool_is_not_an_int(tmp_path: Path) -> None:
    cfg = _fixture_dict()
    cfg["seed"] = True
    with pytest.raises(ProfileError, match=r"'seed' must be int"):
        load_profile(_write(tmp_path, cfg))


def test_bad_split_fractions(tmp_path: Path) -> None:
    cfg = _fixture_dict()
    cfg["prepare"]["split_fractions"] = [0.7, 0.2, 0.2]
    path = _write(tmp_path, cfg)
    with pytest.raises(ProfileError, match=r"prepare\.split_fractions") as err:
        load_profile(path)
    assert str(path) in str(err.value)


@pytest.mark.parametrize("section", ["zero_shot", "finetune.training"])
def test_a_non_positive_mask_grid_is_refused_with_the_key_named(tmp_path: Path, section: str) -> None:
    cfg = _fixture_dict()
    node = cfg
    for part in section.split("."):
        node = node[part]
    node["mask_grid_px"] = 0
    with pytest.raises(ProfileError, match=rf"'{section}\.mask_grid_px' must be a positive"):
        load_profile(_write(tmp_path, cfg))


def test_unknown_profile_lists_available() -> None:
    with pytest.raises(ProfileError, match="available: .*fixture"):
        load_profile("no_such_profile")


def test_overrides_merge_deeply() -> None:
    base = load_profile("fixture")
    cfg = load_profile("fixture", overrides={"cohort": {"subjects_per_dataset": 2}, "seed": 7})
    assert cfg["cohort"]["subjects_per_dataset"] == 2
    assert cfg["seed"] == 7
    # sibling keys of the overridden one survive
    assert cfg["cohort"]["matrix_scale"] == base["cohort"]["matrix_scale"]
    assert cfg["paths"] == base["paths"]


def test_overrides_are_validated() -> None:
    with pytest.raises(ProfileError, match=r"'cohort\.supersample' must be int"):
        load_profile("fixture", overrides={"cohort": {"supersample": "2"}})


def test_optional_keys_take_their_defaults_and_are_still_type_checked(tmp_path: Path) -> None:
    data = yaml.safe_load((params_dir() / "fixture.yaml").read_text())
    data["models"].pop("cpu_compile", None)
    data["biomarkers"].pop("max_real_subjects", None)
    data.pop("datasets", None)
    path = tmp_path / "older.yaml"
    path.write_text(yaml.safe_dump(data))
    cfg = load_profile(str(path))
    assert cfg["models"]["cpu_compile"] is False and cfg["biomarkers"]["max_real_subjects"] == 0
    assert cfg["datasets"] == []
    data["biomarkers"]["max_real_subjects"] = "four"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ProfileError, match="biomarkers.max_real_subjects"):
        load_profile(str(path))
