"""The ``mskseg`` CLI: exit codes and one-line errors without tracebacks."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from mskseg_lib import cli, notebook_runner
from mskseg_lib.config import params_dir
from mskseg_lib.data.errors import DataError
from mskseg_lib.errors import UserError
from mskseg_lib.settings import PROJECT_ROOT


def _mskseg(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mskseg_lib", *args], cwd=PROJECT_ROOT,
                          capture_output=True, text=True, timeout=120)


def test_validate_shipped_profile() -> None:
    out = _mskseg("validate-profile", "fixture")
    assert out.returncode == 0, out.stderr
    assert "ok: fixture" in out.stdout


def test_validate_broken_profile_one_line(tmp_path: Path) -> None:
    cfg = yaml.safe_load((params_dir() / "fixture.yaml").read_text())
    cfg["cohort"]["bogus"] = 1
    broken = tmp_path / "broken.yaml"
    broken.write_text(yaml.safe_dump(cfg))
    out = _mskseg("validate-profile", str(broken))
    assert out.returncode == 2
    assert "Traceback" not in out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mskseg: error: ")
    assert str(broken) in lines[0] and "cohort.bogus" in lines[0]


def test_every_command_registered() -> None:
    help_text = cli.build_parser().format_help()
    for name in ("run", "validate-profile", "cohort", "prepare"):
        assert name in cli.COMMANDS and name in help_text


def test_run_failure_exits_1(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    def fail(profile, only=None, **kwargs):
        raise notebook_runner.NotebookFailed("02_x", Path("/runs/02_x.ipynb"), "ValueError: no")

    monkeypatch.setattr(notebook_runner, "run_notebooks", fail)
    assert cli.main(["run", "--profile", "fixture", "--only", "02"]) == 1
    err = capsys.readouterr().err
    assert "02_x" in err and "/runs/02_x.ipynb" in err


def test_unknown_notebook_number_exits_2(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                         capsys: pytest.CaptureFixture) -> None:
    monkeypatch.setattr(notebook_runner, "default_notebooks_dir", lambda: tmp_path)
    assert cli.main(["run", "--profile", "fixture", "--only", "42"]) == 2
    err = capsys.readouterr().err.splitlines()  # the profile's INFO line, then the error
    assert [line for line in err if "error" in line] == err[-1:]
    assert err[-1].startswith("mskseg: error: no notebook numbered 42")


def _boom_command(monkeypatch: pytest.MonkeyPatch, exc: BaseException) -> None:
    def boom(args):
        raise exc

    monkeypatch.setitem(cli.COMMANDS, "cohort", cli.Command("x", cli._profile_arg, boom))


def test_user_error_subclass_one_line_exits_2(monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture) -> None:
    class ShapeMismatch(UserError):  # any name: the base class decides, not the class name
        pass

    _boom_command(monkeypatch, ShapeMismatch("subject S01: mask and image shapes differ"))
    assert cli.main(["cohort", "--profile", "fixture"]) == 2
    assert capsys.readouterr().err == "mskseg: error: subject S01: mask and image shapes differ\n"


def test_library_user_errors_exit_2(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    _boom_command(monkeypatch, DataError(Path("/raw/S01/mask.nii.gz"), "mask and image shapes differ"))
    assert cli.main(["cohort", "--profile", "fixture"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and "/raw/S01/mask.nii.gz" in err[0] and "shapes differ" in err[0]


def test_bug_keeps_its_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    class DataError(ValueError):  # named like a user error, but not one: a bug, not exit 2
        pass

    _boom_command(monkeypatch, DataError("index 3 out of range"))
    with pytest.raises(DataError, match="index 3 out of range"):
        cli.main(["cohort", "--profile", "fixture"])


def test_bug_traceback_reaches_the_terminal(tmp_path: Path) -> None:
    """In a real process, an exception that is not a UserError is printed by Python with its
    traceback (exit status 1), not reduced to one line."""
    script = tmp_path / "bug.py"
    script.write_text("from mskseg_lib import cli\n"
                      "def boom(args):\n    raise ZeroDivisionError('division by zero in a handler')\n"
                      "cli.COMMANDS['cohort'] = cli.Command('x', cli._profile_arg, boom)\n"
                      "raise SystemExit(cli.main(['cohort', '--profile', 'fixture']))\n")
    out = subprocess.run([sys.executable, str(script)], cwd=PROJECT_ROOT, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 1
    assert "Traceback" in out.stderr and "ZeroDivisionError: division by zero in a handler" in out.stderr


def test_info_messages_shown_by_default_and_silenced_by_quiet() -> None:
    path = params_dir() / "fixture.yaml"
    default = _mskseg("validate-profile", "fixture")
    assert default.returncode == 0, default.stderr
    assert f"profile fixture: {path}" in default.stderr.splitlines()  # config's INFO message
    for args in (("-q", "validate-profile", "fixture"), ("validate-profile", "fixture", "--quiet")):
        quiet = _mskseg(*args)
        assert quiet.returncode == 0, quiet.stderr
        assert quiet.stderr == ""
        assert quiet.stdout == f"ok: fixture ({path})\n"  # results are not log messages


def test_verbose_shows_debug_messages() -> None:
    path = params_dir() / "fixture.yaml"
    plain = _mskseg("validate-profile", "fixture")
    assert "debug:" not in plain.stderr
    for args in (("-v", "validate-profile", "fixture"), ("validate-profile", "--verbose", "fixture")):
        verbose = _mskseg(*args)
        assert verbose.returncode == 0, verbose.stderr
        assert f"debug: mskseg_lib.config: reading profile {path}" in verbose.stderr.splitlines()
        assert f"profile fixture: {path}" in verbose.stderr.splitlines()


def test_verbose_and_quiet_exclusive() -> None:
    out = _mskseg("-v", "-q", "validate-profile", "fixture")
    assert out.returncode == 2 and "not allowed with argument" in out.stderr


def test_datasets_lists_every_dataset_with_its_labels(capsys: pytest.CaptureFixture) -> None:
    from mskseg_lib.data.catalog import DATASETS, EXAMPLE_CARDS, REAL_SPINE

    assert cli.main(["datasets", "--labels"]) == 0
    out = capsys.readouterr().out
    lines = {line.split()[0]: line for line in out.splitlines()[1:]}
    assert set(lines) == {*DATASETS, REAL_SPINE.name, *EXAMPLE_CARDS}  # 12 study datasets, the real spine, OAI-ZIB
    assert "1 femur; 2 femoral_cartilage; 3 tibia; 4 tibial_cartilage" in lines["OAIZIB_3D_DESS_Research_Anatomical_507"]
    assert "mskseg_lib/data/cards/study.yaml" in lines["Knee_3D_DESS_Research_Anatomical_86"]
    thigh = lines["Thigh_2D_T1ax_Clinical_Anatomical_50"]
    assert " 9 " in thigh and "fat, muscle, bone, nerve" in thigh and "9 nerve_bundle" in thigh


def test_unknown_dataset_is_one_plain_line(capsys: pytest.CaptureFixture) -> None:
    from mskseg_lib.data.catalog import UnknownDatasetError, get_dataset
    from mskseg_lib.errors import UserError

    with pytest.raises(UnknownDatasetError) as err:
        get_dataset("Lumbar_9labels")
    assert isinstance(err.value, (KeyError, UserError))  # old callers catching KeyError still work
    message = str(err.value)
    assert message.startswith("unknown dataset 'Lumbar_9labels': no dataset card declares it (known: Hip_3D_CUBE")
    assert "\n" not in message
    assert "mskseg datasets" in message


def _bad_profile(tmp_path: Path) -> Path:
    """A fixture copy with its folders in ``tmp_path`` and three problems that need no data work:
    a manifest with an unknown dataset and a missing file, an unknown condition kind, and a grid
    entry training on an unknown dataset."""
    image = tmp_path / "site" / "s1.nii.gz"
    image.parent.mkdir()
    image.write_bytes(b"not read by the checks")
    manifest = tmp_path / "site" / "manifest.csv"
    manifest.write_text("dataset,subject_id,image_format,image_path,mask_format,mask_path\n"
                        "Elbow_Unknown_1,s1,nifti,s1.nii.gz,nifti,s1.nii.gz\n"
                        "Knee_3D_DESS_Research_Anatomical_86,s2,nifti,s1.nii.gz,nifti,absent_mask.nii.gz\n")
    cfg = yaml.safe_load((params_dir() / "fixture.yaml").read_text())
    cfg["paths"] = {key: str(tmp_path / key) for key in cfg["paths"]}
    cfg["sources"] = [{"type": "manifest", "path": str(manifest)}]
    cfg["zero_shot"]["conditions"].append({"name": "wobble", "kind": "wobble"})
    cfg["finetune"]["experiments"].append({"group": "size", "train_on": ["Elbow_Unknown_1"]})
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_validate_reports_every_nested_problem_without_data_work(tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture) -> None:
    path = _bad_profile(tmp_path)
    assert cli.main(["-q", "validate-profile", str(path)]) == 2
    out = capsys.readouterr()
    assert out.out == ""
    lines = out.err.splitlines()
    manifest = tmp_path / "site" / "manifest.csv"
    prefix = f"mskseg: error: {path}: "
    assert len(lines) == 4 and all(line.startswith(prefix) for line in lines), lines
    sources_1, sources_2, conditions, experiments = (line[len(prefix):] for line in lines)
    assert sources_1.startswith(f"sources[0]: {manifest} row 2 (Elbow_Unknown_1/s1): unknown dataset 'Elbow_Unknown_1'")
    assert sources_2.startswith(f"sources[0]: {manifest} row 3 (Knee_3D_DESS_Research_Anatomical_86/s2): ")
    assert "absent_mask.nii.gz" in sources_2 and "not found" in sources_2
    assert conditions.startswith("zero_shot.conditions[3]: kind must be one of") and "'wobble'" in conditions
    assert experiments.startswith("finetune.experiments") and "unknown dataset 'Elbow_Unknown_1'" in experiments
    for folder in ("data_root", "runs_dir", "tables_dir", "figures_dir"):  # no cohort, prepare or run
        assert not (tmp_path / folder).exists()


def test_validate_shipped_profiles_ok(capsys: pytest.CaptureFixture) -> None:
    assert cli.main(["-q", "validate-profile", "fixture", "default", "paper"]) == 0
    out = capsys.readouterr()
    assert out.err == ""
    assert out.out.splitlines() == [f"ok: {n} ({params_dir() / (n + '.yaml')})" for n in ("fixture", "default", "paper")]


def test_validate_mixed_effects_condition_must_be_a_zero_shot_condition() -> None:
    from mskseg_lib.config import load_profile
    from mskseg_lib.from_profile.checks import profile_problems

    cfg = load_profile("fixture")
    assert profile_problems(cfg) == []
    cfg["mixed_effects"]["condition"] = "gt_boxx"
    assert profile_problems(cfg) == ["mixed_effects.condition: 'gt_boxx' is not a zero_shot.conditions name "
                                     "(have ['gt_box', 'jitter_5px', 'shift_20grid'])"]
