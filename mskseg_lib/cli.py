"""The ``mskseg`` command (also ``python -m mskseg_lib``).

Each subcommand is one entry in ``COMMANDS``: a function adding its arguments and a handler
returning the exit status. Add one with the ``command`` decorator::

    def _evaluate_args(p): p.add_argument("--profile", required=True)

    @command("evaluate", "evaluate the models", _evaluate_args)
    def _evaluate(args): ...; return 0

User errors (an invalid profile, bad input data, an unknown notebook number) print one line
``mskseg: error: ...`` and exit 2 without a traceback; a failing notebook exits 1.
Modules still under construction (``mskseg_lib.data.*``) are imported inside the handlers so the
rest of the CLI works without them.
"""
from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

__all__ = ["COMMANDS", "Command", "command", "build_parser", "main", "USER_ERROR_NAMES"]

# Exception classes (matched by name anywhere in the MRO) that mean "the user's input is wrong".
USER_ERROR_NAMES = frozenset({"ProfileError", "DataError", "NotebookSelectionError", "CheckpointMissing",
                              "ChecksumMismatch", "StateDictMismatch", "RunMismatch", "GridError"})

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
    from mskseg_lib.config import load_profile

    return load_profile(name)


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


def _validate_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("profiles", nargs="+", metavar="NAME", help="profile names or YAML paths")


@command("validate-profile", "check profiles against the schema", _validate_args)
def _validate(args: argparse.Namespace) -> int:
    from mskseg_lib.config import ProfileError, profile_path

    status = 0
    for name in args.profiles:
        try:
            _load(name)
        except ProfileError as exc:
            print(f"mskseg: error: {_one_line(exc)}", file=sys.stderr)
            status = 2
        else:
            print(f"ok: {name} ({profile_path(name)})")
    return status


@command("cohort", "generate the synthetic MSK MRI cohort of a profile", _profile_arg)
def _cohort(args: argparse.Namespace) -> int:
    cfg = _load(args.profile)
    from mskseg_lib.data.cohort import generate_cohort

    _report(generate_cohort(cfg))
    return 0


@command("prepare", "prepare slices, splits and exports of a profile", _profile_arg)
def _prepare(args: argparse.Namespace) -> int:
    cfg = _load(args.profile)
    from mskseg_lib.data.prepare import prepare_all

    _report(prepare_all(cfg))
    return 0


@command("zero-shot", "evaluate the profile's zoo models zero-shot (resumable run folder)", _profile_arg)
def _zero_shot(args: argparse.Namespace) -> int:
    cfg = _load(args.profile)
    from mskseg_lib.evaluation.zero_shot import run_zero_shot

    run = run_zero_shot(cfg)
    for row in run.models.itertuples():
        print(f"{row.model_key}: {row.status}" + (f" ({row.detail})" if row.detail else ""))
    print(f"run folder: {run.run_dir} (summary.json, *_metrics.csv, manifest.json)")
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
    """Single process: train and score the grid. Under ``torchrun`` (WORLD_SIZE > 1) every rank
    trains the named experiments together; scoring is left to a single-process call."""
    import os

    cfg = _load(args.profile)
    from mskseg_lib.data.tables import load_tables
    from mskseg_lib.finetuning.engine import train_run
    from mskseg_lib.finetuning.grid import GridError, expand_grid
    from mskseg_lib.finetuning.runner import run_grid

    subjects, _ = load_tables(cfg)
    experiments = expand_grid(cfg, sorted(subjects["dataset"].unique()))
    runs = {e.run_id(r): (e, r) for e in experiments for r in range(1, cfg["finetune"]["repeats"] + 1)}
    if args.list:
        print("\n".join(runs))
        return 0
    unknown = sorted(set(args.experiment or []) - set(runs))
    if unknown:
        raise GridError(f"unknown run id(s) {unknown}; see: mskseg finetune --profile {args.profile} --list")
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 or args.train_only:
        for rid in args.experiment or list(runs):
            exp, repeat = runs[rid]
            summary = train_run(cfg, exp, repeat)
            if int(os.environ.get("RANK", "0")) == 0:
                print(f"{rid}: {summary['status']} after {summary['epochs_run']} epochs ({summary['stop_reason']})")
        return 0
    result = run_grid(cfg, only=args.experiment)
    for row in result.experiments.itertuples():
        print(f"{row.experiment_id}: {row.status}")
    print(f"results: {result.root} (experiments.csv, subject_metrics.csv, history.csv, manifest.json)")
    return 0


def _train_detector_args(p: argparse.ArgumentParser) -> None:
    _profile_arg(p)
    p.add_argument("--dataset", action="append", default=None, metavar="NAME",
                   help="only this dataset; repeatable (default: the profile's autolabel.datasets)")
    p.add_argument("--no-eval", action="store_true", help="do not score the detector on the test split")


@command("train-detector", "train (or reuse) the AutoLabel detector of each dataset; score it on the test split",
         _train_detector_args)
def _train_detector(args: argparse.Namespace) -> int:
    cfg = _load(args.profile)
    from mskseg_lib.autolabel import detector as det
    from mskseg_lib.data.tables import load_tables

    subjects, _ = load_tables(cfg)
    wanted = args.dataset or (sorted(subjects["dataset"].unique()) if cfg["autolabel"]["datasets"] == "all"
                              else list(cfg["autolabel"]["datasets"]))
    for dataset in wanted:
        run = det.train_detector(cfg, dataset)
        print(f"{dataset}: {'reused' if run.reused else 'trained'} {run.weights}")
        if not args.no_eval:
            row = det.evaluate_detector(run.weights, cfg, dataset, split="test").iloc[-1]
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
    cfg = _load(args.profile)
    from mskseg_lib.autolabel import detector as det
    from mskseg_lib.autolabel.inputs import find_volumes
    from mskseg_lib.autolabel.pipeline import AutolabelSettings, Rank, autolabel, detector_prompts
    from mskseg_lib.data.catalog import get_dataset
    from mskseg_lib.data.errors import DataError
    from mskseg_lib.models.checkpoints import sha256_file
    from mskseg_lib.models.interface import pick_device
    from mskseg_lib.models.zoo import load_model, model_availability
    from mskseg_lib.provenance import collect_versions, git_info, utc_now_iso

    spec = get_dataset(args.dataset)
    a = cfg["autolabel"]
    if args.detector:
        weights = Path(args.detector)
        if not weights.is_file():
            raise DataError(weights, "detector weights not found")
    else:  # the profile's detector, only if its training finished with the current settings
        weights = det.trained_detector(cfg, spec.name)
    model_key = args.model
    if model_key is None:
        avail = model_availability(cfg, list(a["models"]))
        ok = avail[avail["status"] == "available"]
        if ok.empty:
            raise DataError(Path(cfg["models"]["checkpoints_dir"]),
                            f"none of autolabel.models has its checkpoint here: {', '.join(avail['model_key'])}")
        model_key = str(ok["model_key"].iloc[0])
    rank = Rank.from_env()
    device = pick_device(cfg["models"]["device"])
    if device.type == "cuda" and rank.world_size > 1:
        import torch

        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")) % max(torch.cuda.device_count(), 1))
    items = find_volumes(args.input, exclude=args.output)
    segmenter = load_model(cfg, model_key, device)
    detector = det.load_detector(weights, a["detector"], device)
    settings = AutolabelSettings.from_profile(cfg, spec)
    model_ids = {"segmenter": model_key, "segmenter_checkpoint": str((getattr(segmenter, "checkpoint", None) or {}).get("sha256", "")),
                 "segmenter_input_normalisation": str(getattr(segmenter, "normalisation", "")),
                 "detector": sha256_file(weights),
                 "detector_inference": {k: a["detector"][k] for k in ("conf", "iou", "max_det")},
                 "device_type": device.type, "autocast_bf16": bool(cfg["models"]["autocast_bf16"])}
    record = {"command": "autolabel", "profile": cfg["profile"], "seed": cfg["seed"], "input": str(args.input),
              "started_utc": utc_now_iso(), "git": git_info(), "versions": collect_versions(),
              "detector_weights": str(weights), "device": str(device)}
    report = autolabel(items, Path(args.output), segmenter,
                       detector_prompts(detector, int(a["detector"]["image_size_px"]), len(spec.labels),
                                        resize_mode=settings.resize_mode),
                       settings, model_ids=model_ids, rank=rank, run_record=record)
    if rank.rank == 0:
        counts = _status_counts(report.rows)
        print(f"{counts}; report: {Path(args.output) / 'autolabel_report.json'}")
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
                                                      '"positive": true}, ...] (voxel indices of --input)')
    src.add_argument("--detector", metavar="WEIGHTS",
                     help="detector weights: each label is prompted with its best-scoring box in the volume")


@command("video3d", "segment structures through a volume from a few clicks (or a detector's best box per "
                    "structure): SAM2 video propagation, or slice-to-slice carrying for image-only models", _video3d_args)
def _video3d(args: argparse.Namespace) -> int:
    cfg = _load(args.profile)
    from mskseg_lib.autolabel import detector as det
    from mskseg_lib.autolabel.inputs import find_volumes, read_volume
    from mskseg_lib.autolabel.pipeline import clip_percentiles, detector_prompts, resize_mode_for, slicing
    from mskseg_lib.data.catalog import get_dataset
    from mskseg_lib.data.errors import DataError
    from mskseg_lib.models.interface import pick_device
    from mskseg_lib.provenance import collect_versions, git_info, utc_now_iso
    from mskseg_lib.video3d import segment
    from mskseg_lib.video3d.predictor import choose_offload
    from mskseg_lib.video3d.study import load_video_model

    started = utc_now_iso()
    out_path = segment.check_output_path(Path(args.output))
    spec = get_dataset(args.dataset)
    items = find_volumes(args.input)
    if len(items) != 1:
        raise DataError(Path(args.input), f"expected one volume, found {len(items)}")
    sl = slicing(read_volume(items[0]), spec, clip_percentiles(cfg, spec.name), resize_mode_for(cfg))
    device = pick_device(cfg["models"]["device"])
    if args.clicks:
        clicks_path = Path(args.clicks)
        try:
            seeds = segment.clicks_to_prompts(sl, segment.read_clicks(clicks_path), spec)
        except (ValueError, TypeError) as exc:
            raise DataError(clicks_path, str(exc)) from None
        prompt_source = {"clicks": str(args.clicks)}
    else:
        weights = Path(args.detector)
        if not weights.is_file():
            raise DataError(weights, "detector weights not found")
        a = cfg["autolabel"]["detector"]
        source = detector_prompts(det.load_detector(weights, a, device), int(a["image_size_px"]), len(spec.labels),
                                  resize_mode=sl.resize_mode)
        seeds = segment.detector_seeds(source([sl.display_slice(k) for k in range(sl.n_slices)], list(range(sl.n_slices))))
        if not seeds:
            raise DataError(Path(args.input), "the detector found nothing in this volume: no prompt to propagate")
        prompt_source = {"detector": str(weights)}
    model = load_video_model(cfg, args.model, device)
    offload = choose_offload(cfg["video3d"]["offload_state"], device, sl.n_slices, len(seeds),
                             int(model.segmenter.input_size_px))
    run, scheme = segment.propagate(model, sl, seeds, cfg["video3d"]["carry"], offload)
    record = {"command": "video3d", "profile": cfg["profile"], "seed": cfg["seed"], "input": str(args.input),
              "dataset": spec.name, "model": args.model, "model_identity": model.identity, "scheme": scheme,
              **prompt_source, "prompts": [{"label": s.label, "slice": s.frame,
                                            "points": None if s.points is None else s.points.tolist(),
                                            "point_labels": None if s.point_labels is None else s.point_labels.tolist(),
                                            "box": None if s.box is None else s.box.tolist()} for s in seeds],
              "carry": cfg["video3d"]["carry"], "offload_state_to_cpu": offload, "device": str(device),
              "started_utc": started, "git": git_info(), "versions": collect_versions()}
    out = segment.write_result(out_path, sl, run, record)
    print(f"{scheme}: {run.encoded_slices} slices encoded in {run.seconds:.1f} s; written {out}")
    return 0


def _status_counts(rows: list[dict]) -> str:
    """'3 labelled, 1 skipped (done), 1 failed' from report rows."""
    from collections import Counter

    c = Counter(r["status"] for r in rows)
    return ", ".join(f"{n} {status}" for status, n in sorted(c.items()))


# --- entry point ------------------------------------------------------------------------------

def _bench_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("target", choices=["storage", "zero-shot", "finetune", "video3d"], help="what to measure")
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


@command("bench", "measure performance (storage per slice; zero-shot pipeline vs model floor; finetune steps; "
                  "video3d in-memory frames vs JPEG folder)", _bench_args)
def _bench(args: argparse.Namespace) -> int:
    cfg = _load(args.profile)
    from mskseg_lib.atomic import write_json
    from mskseg_lib.config import resolve_path
    from mskseg_lib.data.slice_store import measure_storage
    from mskseg_lib.data.tables import load_tables

    if args.target == "video3d":
        from mskseg_lib.video3d.benchmark import bench_video3d

        model = args.model or "tiny"
        result = bench_video3d(cfg, model, args.repeats)
        out = resolve_path(cfg, "runs_dir") / "bench" / f"video3d_{model}.json"
        write_json(out, result)
        _report({k: v for k, v in result.items() if k not in ("versions", "times_s")})
        print(f"written: {out}")
        return 0
    args.model = args.model or "lite_medsam"
    if args.target == "finetune":
        from mskseg_lib.finetuning.benchmark import bench_finetune

        result = bench_finetune(cfg, args.model, args.dataset, args.steps)
        out = resolve_path(cfg, "runs_dir") / "bench" / f"finetune_{args.model}.json"
        write_json(out, result)
        _report({k: v for k, v in result.items() if k != "versions"})
        print(f"written: {out}")
        return 0
    if args.target == "zero-shot":
        from mskseg_lib.evaluation.benchmark import bench_zero_shot

        result = bench_zero_shot(cfg, args.model, args.slices, args.min_prompts, args.reencode_slices)
        out = resolve_path(cfg, "runs_dir") / "bench" / f"zero_shot_{args.model}.json"
        write_json(out, result)
        _report({k: v for k, v in result.items() if k != "versions"})
        print(f"written: {out}")
        return 0
    subjects, _ = load_tables(cfg)
    size = args.size or int(cfg["prepare"]["slice_sizes_px"][0])
    result = measure_storage(cfg, subjects, size, n_reads=args.reads)
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
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, cmd in COMMANDS.items():
        p = sub.add_parser(name, help=cmd.help, description=cmd.help)
        cmd.add_arguments(p)
        p.set_defaults(_handler=cmd.handler)
    return parser


def _one_line(exc: BaseException) -> str:
    """``"invalid profile:\\n  a\\n  b"`` -> ``"invalid profile: a; b"``."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    if not lines:
        return type(exc).__name__
    head, rest = lines[0], lines[1:]
    if not rest:
        return head
    return f"{head} {'; '.join(rest)}" if head.endswith(":") else "; ".join(lines)


def _is_user_error(exc: BaseException) -> bool:
    return any(cls.__name__ in USER_ERROR_NAMES for cls in type(exc).__mro__)


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` and run the subcommand; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args._handler(args) or 0)
    except KeyboardInterrupt:
        print("mskseg: interrupted", file=sys.stderr)
        return 130
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.startswith("mskseg_lib."):
            print(f"mskseg: error: {exc.name} is not available in this checkout yet", file=sys.stderr)
            return 2
        raise
    except Exception as exc:
        if _is_user_error(exc):
            print(f"mskseg: error: {_one_line(exc)}", file=sys.stderr)
            return 2
        raise


if __name__ == "__main__":
    raise SystemExit(main())
