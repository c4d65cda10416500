"""The ``mskseg`` command (also ``python -m mskseg_lib``).

Each subcommand is one entry in ``COMMANDS``: a function adding its arguments and a handler
returning the exit status. A handler is thin: it turns the parsed arguments into the library's
arguments (a profile through :mod:`mskseg_lib.from_profile`), calls one library function, and
prints what that returned; choosing models, devices, ranks and writing provenance records is
the library's job. Add one with the ``command`` decorator::

    def _evaluate_args(p): p.add_argument("--profile", required=True)

    @command("evaluate", "evaluate the models", _evaluate_args)
    def _evaluate(args):
        from mskseg_lib.evaluation.x import evaluate   # imported here: `mskseg --help` stays fast
        _report(evaluate(...)); return 0

Results go to stdout; the library's log messages go to stderr (``logging``, configured by
:func:`mskseg_lib.logging_setup.configure_logging`): INFO by default, ``-v`` adds DEBUG, ``-q``
keeps only warnings and errors. A user error (any :class:`mskseg_lib.errors.UserError`: an
invalid profile, bad input data, an unknown notebook number, a missing checkpoint) prints one
line ``mskseg: error: ...`` and exits 2 without a traceback; a failing notebook exits 1; any
other exception is a bug and keeps its traceback. A full disk or a read-only output folder is
such a user error (:class:`mskseg_lib.atomic.OutputWriteError`), and so is a second command on a
profile whose runs folder another command is writing (:class:`mskseg_lib.run_lock.RunLocked`):
every stage command holds that folder's lock while it works (``_stage``).
"""
from __future__ import annotations

import argparse
import contextlib
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from mskseg_lib.errors import UserError
from mskseg_lib.logging_setup import configure_logging

__all__ = ["COMMANDS", "Command", "command", "build_parser", "main"]

Handler = Callable[[argparse.Namespace], int]
AddArguments = Callable[[argparse.ArgumentParser], None]


@dataclass(frozen=True)
class Command:
    """One subcommand: help text, argument setup and handler."""

    help: str
    add_arguments: AddArguments
    handler: Handler


COMMANDS: dict[str, Command] = {}


def command(name: str, help: str, add_arguments: AddArguments) -> Callable[[Handler], Handler]:
    """Register the decorated function as the handler of subcommand ``name``."""

    def register(handler: Handler) -> Handler:
        COMMANDS[name] = Command(help, add_arguments, handler)
        return handler

    return register


def _profile_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--profile", required=True, metavar="NAME",
                   help="profile name in params/ (fixture, default, paper) or a YAML path")


def _load(name: str) -> dict:
    from mskseg_lib.from_profile import load_profile

    return load_profile(name, check_lock=False)


def _stage(args: argparse.Namespace) -> dict:
    """Load ``args.profile`` and hold its runs folder's lock until the command ends
    (:mod:`mskseg_lib.run_lock`): a second stage command on the same profile refuses at once."""
    from mskseg_lib import run_lock
    from mskseg_lib.config import resolve_path

    cfg = _load(args.profile)
    stack = getattr(args, "_exit_stack", None)
    if stack is not None:
        argv = getattr(args, "_argv", None) or []
        stack.enter_context(run_lock.hold(resolve_path(cfg, "runs_dir"), " ".join(["mskseg", *argv])))
    return cfg


def _report(result: Any) -> None:
    """Print what a step returned: a path, or one ``key: value`` line per field."""
    import dataclasses

    if result is None:
        return
    if dataclasses.is_dataclass(result):
        result = dataclasses.asdict(result)
    if isinstance(result, dict):
        for key, value in result.items():
            print(f"  {key}: {round(value, 4) if isinstance(value, float) else value}")
    else:
        print(f"result: {result}")


# --- subcommands -------------------------------------------------------------------------------

def _run_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--profile", default="default", metavar="NAME",
                   help="profile name in params/ or a YAML path (default: default)")
    p.add_argument("--only", metavar="NN[,NN...]", default=None,
                   help="run only these notebook numbers, e.g. 01,03")


@command("run", "execute the numbered notebooks with papermill", _run_args)
def _run(args: argparse.Namespace) -> int:
    from mskseg_lib.notebook_runner import NotebookFailed, run_notebooks

    only = [x for x in args.only.split(",") if x.strip()] if args.only else None
    try:
        run_dir = run_notebooks(args.profile, only)
    except NotebookFailed as exc:
        print(f"mskseg: error: {exc}", file=sys.stderr)
        return 1
    print(f"run folder: {run_dir}")
    return 0


def _datasets_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--labels", action="store_true", help="also list each dataset's labels (value and name)")
    p.add_argument("--profile", help="also list the dataset cards this profile declares (its datasets: section)")
    p.add_argument("--cards", nargs="+", metavar="FILE", default=[],
                   help="also list (and check) the dataset cards in these YAML files")


@command("datasets", "list the dataset cards mskseg knows: anatomy, plane, labels, tissue classes, biomarkers",
         _datasets_args)
def _datasets(args: argparse.Namespace) -> int:
    from mskseg_lib.data.cards import read_card_file
    from mskseg_lib.data.catalog import datasets_table, known_datasets, register_cards

    if args.profile:
        _load(args.profile)  # registers the profile's cards
    for path in args.cards:
        register_cards(read_card_file(path))
    table = datasets_table(known_datasets())
    columns = ["dataset", "anatomy", "plane", "acquisition", "sequence", "n_labels", "tissue_classes", "biomarkers",
               "card"]
    print(table[columns + (["labels"] if args.labels else [])].to_string(index=False))
    return 0


def _checkpoints_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", choices=["fetch", "status"],
                   help="fetch: download and verify into models.checkpoints_dir; status: what is present and verified")
    p.add_argument("--profile", default="paper", metavar="NAME",
                   help="profile whose models.checkpoints_dir / checkpoints / sha256 apply (default: paper)")
    p.add_argument("--models", nargs="+", metavar="NAME",
                   help="zoo names (default fetch: SAM ViT-B/L/H and SAM2 t/s/b+/l; status: the whole zoo)")
    p.add_argument("--mirror", metavar="URL", help="a base URL serving the registry's file names (a site mirror)")


@command("checkpoints", "download the zoo's weights with their SHA-256 checked, or list what is present and verified",
         _checkpoints_args)
def _checkpoints(args: argparse.Namespace) -> int:
    from mskseg_lib.from_profile.models import model_settings
    from mskseg_lib.models.fetch import DOWNLOADABLE, checkpoint_status, fetch_checkpoints

    settings = model_settings(_load(args.profile))
    if args.action == "fetch":
        results = fetch_checkpoints(settings, args.models or DOWNLOADABLE, mirror=args.mirror)
        for r in results:
            digest = f"SHA-256 {r.sha256[:12]}... ({r.digest_source})" if r.sha256 else "no digest"
            print(f"{r.model}: {r.status} {r.path} {digest}")
        manual = [r for r in results if r.status == "manual"]
        for r in manual:
            print(f"{r.model}: place it by hand at {r.path}, then `mskseg checkpoints status` verifies it")
        return 0
    table = checkpoint_status(settings, args.models)
    print(table[["model", "present", "verified", "digest_source", "size_mb", "file"]].to_string(index=False))
    return 1 if (table["verified"] == "MISMATCH").any() else 0


def _device_check_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda or cuda:N")
    p.add_argument("--quick", action="store_true",
                   help="LiteMedSAM at batch 1 only and no SAM ViT-B (a CPU takes 8-10 s per 1024-px slice)")
    p.add_argument("--out", metavar="FILE", help="also write the JSON here")


@command("device-check", "smoke run of the model path on this device: fp32 vs bf16 masks, a known-answer "
         "disc, encoder slices/s per batch size", _device_check_args)
def _device_check(args: argparse.Namespace) -> int:
    import json

    from mskseg_lib.atomic import write_json
    from mskseg_lib.evaluation.device_check import device_check

    result = device_check(args.device, lite_batches=(1,) if args.quick else (1, 8, 32),
                          sam_batches=() if args.quick else (1, 8), repeats=1 if args.quick else 3)
    print(json.dumps({k: v for k, v in result.items() if k != "versions"}, indent=1))
    if args.out:
        write_json(Path(args.out), result)
    ok = result["lite_disc_dice_fp32"] >= 0.9 and result["lite_fp32_vs_bf16_agreement"] >= 0.995
    if not ok:
        print("mskseg: error: LiteMedSAM's masks are off on this device (disc Dice < 0.9 or fp32/bf16 Dice < 0.995)",
              file=sys.stderr)
    return 0 if ok else 1


@command("check-companion", "open a profile's results pages in headless Chromium and report broken ones",
         _profile_arg)
def _check_companion(args: argparse.Namespace) -> int:
    from mskseg_lib.browser_check import check_companion, find_chromium
    from mskseg_lib.config import resolve_path

    cfg = _load(args.profile)
    if find_chromium() is None:
        print("mskseg: error: no Chromium found (install Debian's chromium package or set MSKSEG_CHROMIUM)",
              file=sys.stderr)
        return 2
    try:
        reports = check_companion(resolve_path(cfg, "tables_dir"), resolve_path(cfg, "figures_dir"))
    except FileNotFoundError as exc:
        print(f"mskseg: error: {exc}", file=sys.stderr)
        return 2
    for report in reports:
        print(report.summary())
    return 0 if all(r.ok for r in reports) else 1


def _validate_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("profiles", nargs="+", metavar="NAME", help="profile names or YAML paths")


@command("validate-profile", "check profiles: the schema, every stage's settings, conditions, grid and "
         "manifests (no data work)", _validate_args)
def _validate(args: argparse.Namespace) -> int:
    from mskseg_lib.config import ProfileError, load_profile, profile_path
    from mskseg_lib.from_profile.checks import profile_problems

    status = 0
    for name in args.profiles:
        try:
            cfg = load_profile(name)  # its dataset cards are checked (one line each) by profile_problems
        except ProfileError as exc:
            print(f"mskseg: error: {_one_line(exc)}", file=sys.stderr)
            status = 2
            continue
        problems = profile_problems(cfg)
        for problem in problems:
            print(f"mskseg: error: {name}: {problem}", file=sys.stderr)
        if problems:
            status = 2
        else:
            print(f"ok: {name} ({profile_path(name)})")
    return status


@command("cohort", "generate the synthetic MSK MRI cohort of a profile", _profile_arg)
def _cohort(args: argparse.Namespace) -> int:
    cfg = _stage(args)
    from mskseg_lib.from_profile import data as fp_data

    _report(fp_data.generate(cfg))  # None (nothing printed) when the profile disables the cohort
    return 0


@command("prepare", "prepare slices, splits and exports of a profile", _profile_arg)
def _prepare(args: argparse.Namespace) -> int:
    cfg = _stage(args)
    from mskseg_lib.from_profile import data as fp_data

    _report(fp_data.prepare(cfg))
    return 0


@command("zero-shot", "evaluate the profile's zoo models zero-shot (resumable run folder)", _profile_arg)
def _zero_shot(args: argparse.Namespace) -> int:
    cfg = _stage(args)
    from mskseg_lib.atomic import save_csv
    from mskseg_lib.evaluation.aggregate import dataset_mean_tissue
    from mskseg_lib.evaluation.zero_shot import run_zero_shot
    from mskseg_lib.from_profile.zero_shot import zero_shot_inputs

    run = run_zero_shot(**zero_shot_inputs(cfg))
    for row in run.models.itertuples():
        print(f"{row.model_key}: {row.status}" + (f" ({row.detail})" if row.detail else ""))
    if not run.slices.empty:
        table = dataset_mean_tissue(run.slices, ["dataset", "model_key", "condition"]).round(4)
        save_csv(table, run.run_dir / "dataset_dice.csv")
        print("dataset Dice (the study's Mean Tissue: label means over slices, then tissue classes):")
        print(table.to_string(index=False))
    if run.skipped is not None and not run.skipped.empty:
        print(f"skipped {len(run.skipped)} subject(s) with a bad input file (listed in skipped.csv):")
        for r in run.skipped.itertuples():
            print(f"  {r.dataset}/{r.subject_id}: {r.path}: {r.problem}")
    print(f"run folder: {run.run_dir} (dataset_dice.csv, summary.json, *_metrics.csv, skipped.csv, manifest.json)")
    return 0


def _finetune_args(p: argparse.ArgumentParser) -> None:
    _profile_arg(p)
    p.add_argument("--experiment", action="append", default=None, metavar="RUN_ID",
                   help="only this run id (<task>/<group>/Run_N); repeatable (default: the whole grid)")
    p.add_argument("--list", action="store_true", help="list the grid's run ids and exit")
    p.add_argument("--train-only", action="store_true",
                   help="train, do not score (what each torchrun process does)")


@command("finetune", "train and score the profile's finetuning grid (resumable; torchrun-aware)", _finetune_args)
def _finetune(args: argparse.Namespace) -> int:
    """Single process: train and score the grid. Under ``torchrun`` (WORLD_SIZE > 1) or with
    ``--train-only`` every rank trains the named runs together; scoring is left to a
    single-process call."""
    cfg = _load(args.profile) if args.list else _stage(args)
    from mskseg_lib.finetuning.runner import grid_runs, run_finetune
    from mskseg_lib.from_profile.finetune import finetune_inputs

    inputs = finetune_inputs(cfg)
    if args.list:
        print("\n".join(grid_runs(inputs["experiments"], inputs["repeats"])))
        return 0
    outcome = run_finetune(**inputs, only=args.experiment, train_only=args.train_only)
    for rid, summary in outcome.trained.items():
        print(f"{rid}: {summary['status']} after {summary['epochs_run']} epochs ({summary['stop_reason']})")
    if outcome.grid is not None:
        for row in outcome.grid.experiments.itertuples():
            print(f"{row.experiment_id}: {row.status}")
        print(f"results: {outcome.grid.root} (experiments.csv, subject_metrics.csv, history.csv, manifest.json)")
    return 0


def _train_detector_args(p: argparse.ArgumentParser) -> None:
    _profile_arg(p)
    p.add_argument("--dataset", action="append", default=None, metavar="NAME",
                   help="only this dataset; repeatable (default: the profile's autolabel.datasets)")
    p.add_argument("--no-eval", action="store_true", help="do not score the detector on the test split")


@command("train-detector", "train (or reuse) the AutoLabel detector of each dataset; score it on the test split",
         _train_detector_args)
def _train_detector(args: argparse.Namespace) -> int:
    cfg = _stage(args)
    from mskseg_lib.autolabel.run import train_detectors
    from mskseg_lib.from_profile.autolabel import detector_datasets, train_inputs

    done = train_detectors(args.dataset or detector_datasets(cfg), **train_inputs(cfg),
                           evaluate_split=None if args.no_eval else "test", progress=True)
    for dataset, det in done.items():
        print(f"{dataset}: {'reused' if det.run.reused else 'trained'} {det.run.weights}")
        if det.metrics is not None:
            row = det.metrics.iloc[-1]
            print(f"  test: precision {row.precision:.3f} recall {row.recall:.3f} mAP50 {row.mAP50:.3f} "
                  f"mAP50-95 {row.mAP50_95:.3f} ({row.n_images} images)")
    return 0


def _autolabel_args(p: argparse.ArgumentParser) -> None:
    _profile_arg(p)
    p.add_argument("--dataset", required=True, metavar="NAME",
                   help="the dataset whose labels (and detector) apply, e.g. Thigh_2D_T1ax_Clinical_Anatomical_50")
    p.add_argument("--input", required=True, metavar="PATH",
                   help="a NIfTI file, a DICOM series folder, or a folder of NIfTI files / series")
    p.add_argument("--output", required=True, metavar="DIR", help="where label NIfTIs, detections and overlays go")
    p.add_argument("--model", default=None, metavar="KEY",
                   help="zoo segmenter (default: the first available of autolabel.models)")
    p.add_argument("--detector", default=None, metavar="WEIGHTS",
                   help="detector weights (default: the profile's trained detector of --dataset)")


@command("autolabel", "label volumes with no human prompt: detector boxes -> segmenter -> 3D NIfTI "
                      "(resumable; under torchrun the volumes are split across ranks)", _autolabel_args)
def _autolabel(args: argparse.Namespace) -> int:
    cfg = _stage(args)
    from mskseg_lib.autolabel.run import label_volumes
    from mskseg_lib.from_profile.autolabel import label_inputs

    report = label_volumes(args.input, args.output, **label_inputs(cfg, args.dataset, args.detector, args.model))
    if report.rank == 0:
        print(f"{_status_counts(report.rows)}; report: {Path(args.output) / 'autolabel_report.json'}")
        for r in report.skipped.itertuples():  # also in skipped.csv
            print(f"  failed {r.subject_id}: {r.path}: {r.problem}")
    return 1 if report.failed and len(report.failed) == len(report.rows) else 0


def _video3d_args(p: argparse.ArgumentParser) -> None:
    _profile_arg(p)
    p.add_argument("--dataset", required=True, metavar="NAME",
                   help="the dataset whose labels, plane and intensity clipping apply")
    p.add_argument("--input", required=True, metavar="PATH", help="a NIfTI file or a DICOM series folder")
    p.add_argument("--output", required=True, metavar="FILE", help="the label NIfTI to write (.nii.gz)")
    p.add_argument("--model", required=True, metavar="KEY",
                   help="zoo model: a SAM2 model propagates with its video predictor, others carry masks slice to slice")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--clicks", metavar="JSON", help='click list: [{"label": 1, "i": 40, "j": 120, "k": 80, '
                                                      '"positive": true}, ...] (voxel indices of --input), or a '
                                                      '3D Slicer markup file (.mrk.json, LPS or RAS; each point '
                                                      'labelled by its label or its list name)')
    src.add_argument("--detector", metavar="WEIGHTS",
                     help="detector weights: each label is prompted with its best-scoring box in the volume")


@command("video3d", "segment structures through a volume from a few clicks (or a detector's best box per "
                    "structure): SAM2 video propagation, or slice-to-slice carrying for image-only models", _video3d_args)
def _video3d(args: argparse.Namespace) -> int:
    cfg = _stage(args)
    from mskseg_lib.from_profile.video3d import segment_inputs
    from mskseg_lib.video3d.segment import segment_file

    out = segment_file(Path(args.input), Path(args.output), args.dataset, args.model,
                       clicks=Path(args.clicks) if args.clicks else None,
                       detector_weights=Path(args.detector) if args.detector else None, **segment_inputs(cfg))
    print(f"{out.scheme}: {out.run.encoded_slices} slices encoded in {out.run.seconds:.1f} s; written {out.path}")
    return 0


def _status_counts(rows: list[dict]) -> str:
    """'3 labelled, 1 skipped (done), 1 failed' from report rows."""
    from collections import Counter

    c = Counter(r["status"] for r in rows)
    return ", ".join(f"{n} {status}" for status, n in sorted(c.items()))


# --- entry point ------------------------------------------------------------------------------

def _bench_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("target", choices=["storage", "zero-shot", "finetune", "video3d", "estimate", "cpu-path", "units", "run"],
                   help="what to measure; estimate: the profile's compute per notebook, priced (no model runs); "
                        "cpu-path: an encoder in fp32, bf16, channels-last and torch.compile on the real spine; units: the unit "
                        "costs of the compute floor on this machine; run: a run's wall time against its floor")
    _profile_arg(p)
    p.add_argument("--size", type=int, default=None, help="storage: slice size in px (default: the profile's first)")
    p.add_argument("--reads", type=int, default=500, help="storage: random slice loads to time")
    p.add_argument("--model", default=None,
                   help="zoo model to time (zero-shot, finetune: default lite_medsam; video3d: a SAM2 model, default "
                        "'tiny', the random miniature)")
    p.add_argument("--repeats", type=int, default=2, help="video3d: runs of each route (median reported)")
    p.add_argument("--slices", type=int, default=12, help="zero-shot: slices to time")
    p.add_argument("--min-prompts", type=int, default=5, help="zero-shot: only slices with this many box prompts")
    p.add_argument("--reencode-slices", type=int, default=4, help="zero-shot: slices for the re-encode baseline")
    p.add_argument("--dataset", default=None, help="finetune: dataset whose training samples are timed")
    p.add_argument("--steps", type=int, default=4, help="finetune: timed optimizer steps per strategy")
    p.add_argument("--variants", default=None,
                   help="cpu-path: comma-separated variants (default all: fp32,bf16,channels_last,channels_last_bf16,"
                        "compile,compile_bf16,compile_channels_last)")
    p.add_argument("--run", default=None, help="run: the run folder (default: the profile's newest)")
    p.add_argument("--per-volume", type=int, default=2, help="cpu-path: slices per real spine volume")
    p.add_argument("--gpus", type=int, nargs="+", default=[1, 4], help="estimate: GPU counts to estimate for")
    p.add_argument("--costs", default="h100",
                   help="estimate: unit costs, 'h100' (measured and derived, with sources) or a CSV with columns "
                        "model, kind, seconds, source")
    p.add_argument("--no-store-cost", action="store_true",
                   help="finetune: skip the embedding store's disk/RAM per 1,000 slices for SAM ViT-B and SAM2 b+ "
                        "(one 1024-px slice each: about 15 s on a 2-core CPU)")


def _units(cfg: dict, model_key: str) -> int:
    """``mskseg bench units``: the compute floor's unit costs on this machine, as a CSV."""
    import platform

    import pandas as pd

    from mskseg_lib.atomic import atomic_path
    from mskseg_lib.autolabel.benchmark import bench_detector
    from mskseg_lib.config import resolve_path
    from mskseg_lib.evaluation.benchmark import bench_zero_shot
    from mskseg_lib.finetuning.benchmark import bench_finetune
    from mskseg_lib.from_profile import autolabel as fp_autolabel
    from mskseg_lib.from_profile.finetune import bench_finetune_inputs
    from mskseg_lib.from_profile.zero_shot import bench_inputs
    from mskseg_lib.provenance import utc_now_iso
    from mskseg_lib.workload import COST_COLUMNS, UNIT_COSTS_CSV

    source = f"measured: mskseg bench units {utc_now_iso()[:10]} on {platform.node()} ({platform.machine()})"
    print("encoder and decoder (bench zero-shot) ...", flush=True)
    zs = bench_zero_shot(model_key=model_key, n_slices=8, min_prompts=3, reencode_slices=1, **bench_inputs(cfg))
    print("training steps (bench finetune) ...", flush=True)
    ft = bench_finetune(**bench_finetune_inputs(cfg), model_key=model_key, steps=3)
    train = fp_autolabel.train_inputs(cfg)
    dataset = fp_autolabel.detector_datasets(cfg)[0]
    print(f"detector training images ({dataset}) ...", flush=True)
    det = bench_detector(dataset, train["prepared_dir"], train["settings"], seed=train["seed"], device=train["device"])
    rows = [(model_key, "encode", zs["encode_s_per_slice"]), ("*", "box", zs["decode_s_per_prompt"]),
            (model_key, "frozen_step", ft["partial_s_per_step"]), (model_key, "full_step", ft["full_s_per_step"]),
            ("*", "detector_image", det["s_per_image_epoch"])]
    costs = pd.DataFrame([(m, k, round(float(v), 5), source) for m, k, v in rows], columns=COST_COLUMNS)
    out = resolve_path(cfg, "runs_dir") / "bench" / UNIT_COSTS_CSV
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp:
        costs.to_csv(tmp, index=False)
    print(costs.to_string(index=False))
    print(f"written: {out}")
    return 0


def _bench_run(cfg: dict, run: str | None) -> int:
    """``mskseg bench run``: per notebook, a run's wall time beside its compute floor."""
    import json

    from mskseg_lib.config import resolve_path
    from mskseg_lib.ledger import summarise
    from mskseg_lib.workload import UNIT_COSTS_CSV, ledger_floor, read_costs

    runs = resolve_path(cfg, "runs_dir")
    if run is None:
        found = sorted(runs.glob("*/manifest.json"))
        if not found:
            raise UserError(f"{runs}: no run of profile {cfg['profile']} yet (./run_all.sh --profile {cfg['profile']})")
        run_dir = found[-1].parent
    else:
        run_dir = Path(run)
    manifest_path, ledger_path = run_dir / "manifest.json", run_dir / "encoder_ledger.jsonl"
    if not manifest_path.is_file():
        raise UserError(f"{manifest_path}: not a run folder (no manifest.json)")
    costs_path = runs / "bench" / UNIT_COSTS_CSV
    if not costs_path.is_file():
        raise UserError(f"{costs_path}: no unit costs measured on this machine (mskseg bench units --profile "
                        f"{cfg['profile']})")
    manifest = json.loads(manifest_path.read_text())
    try:
        floor = ledger_floor(ledger_path, read_costs(costs_path))
    except ValueError as exc:
        raise UserError(str(exc)) from None
    wall_total = floor_total = 0.0
    print(f"run {run_dir} ({manifest.get('status')}); unit costs {costs_path}")
    print(f"  {'notebook':<28} {'wall s':>9} {'floor s':>9} {'wall/floor':>10}")
    for rec in manifest.get("notebooks", []):
        nb, wall = rec["notebook"], rec.get("seconds")
        f = floor.get(nb, 0.0)
        wall_total += wall or 0.0
        floor_total += f
        ratio = f"{wall / f:.2f}" if wall and f else "-"
        print(f"  {nb:<28} {wall or 0:>9.1f} {f:>9.1f} {ratio:>10}")
    print(f"  {'run':<28} {wall_total:>9.1f} {floor_total:>9.1f} "
          f"{(wall_total / floor_total if floor_total else float('nan')):>10.2f}")
    for model, v in summarise(ledger_path)["run"].items():
        print(f"  encoder {model}: {v['encoder_calls']} slices encoded, {v['unique_slices']} unique "
              f"(ratio {v['ratio']})")
    return 0


def _cpu_path(cfg: dict, model_key: str, variants: str | None, per_volume: int) -> int:
    """``mskseg bench cpu-path``: encoder variants on the real spine, timed and checked against fp32."""
    import dataclasses

    from mskseg_lib.atomic import write_json
    from mskseg_lib.config import resolve_path
    from mskseg_lib.data.sources import real_spine_manifest
    from mskseg_lib.evaluation.cpu_path import VARIANTS, bench_cpu_path, fastest_acceptable, real_slices
    from mskseg_lib.from_profile.models import model_settings
    from mskseg_lib.models.interface import set_cpu_threads
    from mskseg_lib.models.registry import get_spec
    from mskseg_lib.models.zoo import load_model
    from mskseg_lib.provenance import collect_versions
    from mskseg_lib.settings import real_spine_dir

    root = real_spine_dir()
    if not root.is_dir():
        raise UserError(f"{root}: real spine fixture not found (set MSKSEG_REAL_SPINE)")
    if get_spec(model_key).family == "sam2":
        raise UserError(f"bench cpu-path: {model_key}: SAM-layout models only (lite_medsam, sam_vit_b, medsam_vit_b)")
    settings = dataclasses.replace(model_settings(cfg), device="cpu", cpu_compile=False)
    threads = set_cpu_threads(settings.cpu_threads)
    manifest = real_spine_manifest(root)
    slices = real_slices(list(zip(manifest["image_path"], manifest["mask_path"])), get_spec(model_key).input_size_px,
                         per_volume)
    chosen = variants.split(",") if variants else list(VARIANTS)
    rows = bench_cpu_path(lambda: load_model(model_key, settings), slices, chosen)
    best = fastest_acceptable(rows)
    for r in rows:
        print(f"  {r['variant']:<22} {r['s_per_slice']:.3f} s/slice  first call {r['first_call_s']:.1f} s  "
              f"Dice vs fp32 {r['dice_vs_fp32']:.4f}  {'ok' if r['acceptable'] else 'REJECTED'}  x{r['speedup']:.2f}")
    print(f"fastest with the same masks: {best['variant']} ({best['s_per_slice']:.3f} s/slice, {len(slices)} real "
          f"slices, {threads} threads)")
    out = resolve_path(cfg, "runs_dir") / "bench" / f"cpu_path_{model_key}.json"
    write_json(out, {"model": model_key, "slices": len(slices), "cpu_threads": threads, "variants": rows,
                     "fastest_acceptable": best["variant"], "versions": collect_versions()})
    print(f"written: {out}")
    return 0


def _estimate(cfg: dict, gpus: list[int], costs_arg: str) -> int:
    """``mskseg bench estimate``: counted work per notebook x unit costs, on each GPU count."""

    from mskseg_lib.atomic import write_json
    from mskseg_lib.config import resolve_path
    from mskseg_lib.from_profile.workload import disk_gib, inventory, profile_workload
    from mskseg_lib.workload import estimate, h100_costs, read_costs

    if costs_arg == "h100":
        costs = h100_costs()
    else:
        path = Path(costs_arg)
        if not path.is_file():
            raise UserError(f"{path}: --costs must be 'h100' or a CSV file of unit costs (mskseg bench units)")
        try:
            costs = read_costs(path)
        except ValueError as exc:
            raise UserError(str(exc)) from None
    subjects, slices, what = inventory(cfg)
    stored: dict[str, int] = {}
    work = profile_workload(cfg, subjects, slices, stored=stored)
    table = work.pivot_table(index="notebook", columns="kind", values="count", aggfunc="sum").fillna(0).astype(int)
    hours = {n: estimate(work, costs, n) for n in gpus}
    for n, est in hours.items():
        table[f"hours_{n}gpu"] = est.set_index("notebook")["seconds"].div(3600).round(2)
    print(f"profile {cfg['profile']}: {what} data ({subjects['dataset'].nunique()} datasets, {len(subjects)} subjects, "
          f"{len(slices)} slices); counts are upper bounds where the module says so "
          "(mskseg_lib/from_profile/workload.py)")
    print(table.to_string())
    disk = disk_gib(cfg, slices, stored)
    print(f"disk: prepared slices {disk['prepared_slices']} GiB, embedding store {disk['embedding_store']} GiB")
    print("unit costs:")
    print(costs.to_string(index=False))
    out = resolve_path(cfg, "runs_dir") / "bench" / "estimate.json"
    write_json(out, {"profile": cfg["profile"], "inventory": what, "gpus": gpus, "disk_gib": disk,
                     "work": work.to_dict("records"), "costs": costs.to_dict("records"),
                     "hours": {str(n): est.to_dict("records") for n, est in hours.items()}})
    print(f"written: {out}")
    return 0


@command("bench", "measure performance (storage per slice; zero-shot pipeline vs model floor; finetune steps; "
                  "video3d in-memory frames vs JPEG folder)", _bench_args)
def _bench(args: argparse.Namespace) -> int:
    cfg = _load(args.profile) if args.target == "run" else _stage(args)
    from mskseg_lib.atomic import write_json
    from mskseg_lib.config import resolve_path
    from mskseg_lib.data.slice_store import measure_storage
    from mskseg_lib.data.tables import load_tables
    from mskseg_lib.from_profile import data as fp_data

    if args.target == "estimate":
        return _estimate(cfg, args.gpus, args.costs)
    if args.target == "units":
        return _units(cfg, args.model or "lite_medsam")
    if args.target == "run":
        return _bench_run(cfg, args.run)
    if args.target == "cpu-path":
        return _cpu_path(cfg, args.model or "lite_medsam", args.variants, args.per_volume)
    if args.target == "video3d":
        from mskseg_lib.from_profile.video3d import bench_inputs
        from mskseg_lib.video3d.benchmark import bench_video3d

        model = args.model or "tiny"
        inputs = bench_inputs(cfg)
        result = bench_video3d(inputs.pop("volume"), model, args.repeats, **inputs)
        out = resolve_path(cfg, "runs_dir") / "bench" / f"video3d_{model}.json"
        write_json(out, result)
        _report({k: v for k, v in result.items() if k not in ("versions", "times_s")})
        print(f"written: {out}")
        return 0
    args.model = args.model or "lite_medsam"
    if args.target == "finetune":
        from mskseg_lib.finetuning.benchmark import bench_finetune
        from mskseg_lib.from_profile.finetune import bench_finetune_inputs

        inputs = bench_finetune_inputs(cfg)
        result = bench_finetune(**inputs, model_key=args.model, dataset=args.dataset, steps=args.steps)
        if not args.no_store_cost:
            from mskseg_lib.finetuning.benchmark import store_cost

            result["store_cost"] = [store_cost(key, inputs["models"], inputs["settings"].batch_size)
                                    for key in ("sam_vit_b", "sam2_hiera_base_plus")]
        out = resolve_path(cfg, "runs_dir") / "bench" / f"finetune_{args.model}.json"
        write_json(out, result)
        _report({k: v for k, v in result.items() if k != "versions"})
        print(f"written: {out}")
        return 0
    if args.target == "zero-shot":
        from mskseg_lib.evaluation.benchmark import bench_zero_shot
        from mskseg_lib.from_profile.zero_shot import bench_inputs

        result = bench_zero_shot(model_key=args.model, n_slices=args.slices, min_prompts=args.min_prompts,
                                 reencode_slices=args.reencode_slices, **bench_inputs(cfg))
        out = resolve_path(cfg, "runs_dir") / "bench" / f"zero_shot_{args.model}.json"
        write_json(out, result)
        _report({k: v for k, v in result.items() if k != "versions"})
        print(f"written: {out}")
        return 0
    subjects, _ = load_tables(fp_data.prepared_dir(cfg))
    size = args.size or int(cfg["prepare"]["slice_sizes_px"][0])
    result = measure_storage(subjects, size, n_reads=args.reads)
    out = resolve_path(cfg, "runs_dir") / "bench" / f"storage_{size}.json"
    write_json(out, result)
    _report(result)
    print(f"written: {out}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """Parser with one subparser per entry of ``COMMANDS``."""
    from mskseg_lib import __version__

    parser = argparse.ArgumentParser(
        prog="mskseg",
        description="Segment-anything models on musculoskeletal MRI: run and check the study.",
    )
    parser.add_argument("--version", action="version", version=f"mskseg {__version__}")
    _verbosity_args(parser)
    parser.set_defaults(log_level="INFO")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, cmd in COMMANDS.items():
        p = sub.add_parser(name, help=cmd.help, description=cmd.help)
        cmd.add_arguments(p)
        _verbosity_args(p, default=argparse.SUPPRESS)  # also after the command: mskseg run -q ...
        p.set_defaults(_handler=cmd.handler)
    return parser


def _verbosity_args(p: argparse.ArgumentParser, default: Any = None) -> None:
    """``-v`` (DEBUG) / ``-q`` (WARNING) into ``log_level``; a subparser's default is SUPPRESS so
    that an option given before the command is not reset by the subparser."""
    g = p.add_mutually_exclusive_group()
    g.add_argument("-v", "--verbose", dest="log_level", action="store_const", const="DEBUG", default=default,
                   help="also show debug messages")
    g.add_argument("-q", "--quiet", dest="log_level", action="store_const", const="WARNING", default=default,
                   help="show only warnings and errors (results are still printed)")


def _one_line(exc: BaseException) -> str:
    """``"invalid profile:\\n  a\\n  b"`` -> ``"invalid profile: a; b"``."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    if not lines:
        return type(exc).__name__
    head, rest = lines[0], lines[1:]
    if not rest:
        return head
    return f"{head} {'; '.join(rest)}" if head.endswith(":") else "; ".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv``, configure logging (``-v``/``-q``) and run the subcommand.

    Returns the exit status: the handler's (0, or 1 for a failed notebook), 2 for a
    :class:`~mskseg_lib.errors.UserError` (printed as one line, no traceback), 130 when
    interrupted. Any other exception propagates with its traceback: it is a bug.
    """
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    configure_logging(args.log_level)
    try:
        with contextlib.ExitStack() as stack:  # what a handler holds (a run lock) is released here
            args._exit_stack, args._argv = stack, argv
            return int(args._handler(args) or 0)
    except KeyboardInterrupt:
        print("mskseg: interrupted", file=sys.stderr)
        return 130
    except UserError as exc:
        print(f"mskseg: error: {_one_line(exc)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
