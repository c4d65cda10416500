# ---
# jupyter:
#   jupytext:
#     cell_metadata_filter: tags,-all
#     notebook_metadata_filter: kernelspec,-jupytext.text_representation.jupytext_version
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#   kernelspec:
#     display_name: Python 3 (mskseg)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 07 · SAM2 video propagation through 3D volumes
#
# A 3D MRI volume is a stack of slices, and a stack of slices can be read as a video. SAM2's
# video predictor keeps a memory of the frames it has segmented, so one click on one slice can
# segment a structure through the whole volume. This notebook reproduces the design of a
# *different* study, the one that adapted SAM2's video predictor to knee MRI (Yu et al.,
# `sam2_knee_video_study.txt`, with its own Table 1), so none of its results carry the MSK
# study's supplementary numbers: tables are `tableX07*`, figures `figX07*`. It compares four
# prompt schemes on bones:
#
# 1. **points per slice**: a point at each bone's centroid on every slice (image predictor, no memory);
# 2. **boxes per slice**: each bone's box on every slice (image predictor, no memory);
# 3. **1 point + video**: one positive point per bone on the middle slice, propagated forward
#    and backward through the volume (video predictor);
# 4. **points + negatives + video**: as (3), plus negative points on the other bones.
#
# Models without memory (LiteMedSAM, SAM, MedSAM) get a propagation of their own: the middle
# slice is prompted with a box (or a point), and each slice's predicted mask becomes the prompt
# of the next (**box carried** / **point carried**), in both directions, until the structure ends.
#
# Volumes: the sagittal 3D knee sets of the **synthetic** cohort (femur, tibia, patella) and the
# **real** lumbar spine fixture (vertebral bodies L1-L5); every table has a `data_source` column.
# Prompts come from the manual masks. As in the study, a volume is scored by the 3D Dice of femur
# only, tibia only and "femur and tibia combined": the Dice of the **union of the femur and tibia
# masks** (the patella, which the study prompted only with negative points, is not part of it;
# its own Dice and an all-bones union are kept as labelled extra columns). Outputs: median 3D
# Dice per scheme, model size and structure (**table X07a**) with parameter counts and seconds
# per volume; per volume (**X07b**); the published anchor beside the regenerated value
# (**X07c**); the runs (**X07d**); slice Dice against the distance from the prompted slice
# (**figure X07a**: where propagation drifts); 3D Dice per scheme (**X07b**); example slices
# (**X07c**).
#
# SAM2's video predictor only reads JPEG folders; here the slices go to it from memory
# (`mskseg_lib.video3d.frames`), with the same arithmetic (a test checks the frames are equal to
# the JPEG route's for the same pixels, and the masks too). One difference between the routes
# of a SAM2 model stays: its video predictor stretches a slice to the square model input, while
# the image predictor (per-slice schemes) keeps the aspect ratio and pads, as the rest of the
# study does. The knee and spine slices here are square, so both see the same geometry.

# %% tags=["parameters"]
import os

profile = os.environ.get("MSKSEG_PROFILE", "default")
params = None

# %% [markdown]
# ## Setup
#
# `params` is the full profile as injected by papermill (or `None` when run interactively).

# %%
import pandas as pd

from mskseg_lib.data.tables import load_tables
from mskseg_lib.from_profile import data as fp_data
from mskseg_lib.from_profile import load_profile
from mskseg_lib.from_profile import video3d as fp_video3d
from mskseg_lib.logging_setup import configure_logging
from mskseg_lib.models.interface import set_cpu_threads
from mskseg_lib.plots import video3d as vplots
from mskseg_lib.plots.style import apply_style
from mskseg_lib.reference import published_video3d
from mskseg_lib.reporting import save_figure, save_table, show_skipped
from mskseg_lib.video3d import study
from mskseg_lib.video3d.prompts import SCHEMES, prompt_slice

configure_logging(stream="stdout")  # the library's INFO messages appear under each cell
cfg = load_profile(profile, overrides=params if isinstance(params, dict) else None)
v = cfg["video3d"]
apply_style()
set_cpu_threads(int(cfg["models"]["cpu_threads"]))
pd.set_option("display.width", 160)
inputs = fp_video3d.study_inputs(cfg)  # folder, available models, settings, model settings, seed
settings = inputs["settings"]
print(f"profile: {cfg['profile']} - {cfg['description']}")
print({k: v[k] for k in ("datasets", "split", "max_subjects_per_dataset", "real_spine", "max_real_subjects", "tissues",
                         "combined_structures")})
print("carry:", v["carry"], "| offload_state:", v["offload_state"])
pd.DataFrame({"scheme": list(SCHEMES), "what": list(SCHEMES.values())})

# %% [markdown]
# ## Volumes
#
# Test subjects of the knee sets (no finetuned model of notebook 03 saw them; here every model is
# zero-shot) and the real spine volumes. Structures are the labels of the tissue classes in
# `video3d.tissues` (bones). The prompted ("middle") slice is the slice holding the most of the
# structures, nearest the centre of their joint extent.

# %%
fp_data.prepare(cfg)
subjects, _ = load_tables(fp_data.prepared_dir(cfg))
notes = []
volumes = fp_video3d.volumes(cfg, subjects, notes)
sources = study.volume_sources(volumes)  # dataset -> synthetic (cohort) / real (spine fixture)
for note in notes:
    print("note:", note)
if not v["real_spine"]:
    print("real spine fixture: off in this profile (video3d.real_spine)")
rows = []
for _, r in volumes.iterrows():
    try:
        vol = study.load_volume(r, settings)
    except (ValueError, OSError) as exc:  # reported again, and skipped, by the study below
        rows.append({"dataset": r["dataset"], "subject_id": r["subject_id"], "source": r["source"], "error": str(exc)})
        continue
    rows.append({"dataset": r["dataset"], "subject_id": r["subject_id"], "source": r["source"],
                 "slices": len(vol.image), "slice_px": "x".join(map(str, vol.image.shape[1:])),
                 "structures": ", ".join(vol.names[x] for x in vol.values),
                 "prompted_slice": prompt_slice(vol.gt, vol.values)})
pd.DataFrame(rows)

# %% [markdown]
# ## Models
#
# SAM2 in four sizes (video and image predictor from the same weights) wherever a checkpoint is
# configured, and the image-only models. Models whose checkpoints are missing are listed, not run.

# %%
models = fp_video3d.models_table(cfg)
models[["model_key", "model", "architecture", "input_size_px", "video_predictor", "status"]]

# %% [markdown]
# ## Running the schemes
#
# Per model and volume: each slice is encoded once for all image-predictor schemes (its encode
# time is charged to every scheme that used it, as if it had run alone); the video schemes run
# the video predictor over all frames, forward and backward from the prompted slice. Predicted
# label volumes are written as NIfTI on the source grid. Scores are kept per volume and reused
# on a rerun. Without a profile: `study.run_study(Path("runs/video3d"), volumes, ["lite_medsam"],
# study.Video3dSettings(), models=ModelSettings(checkpoints_dir=Path("weights")))`.

# %%
result = study.run_study(inputs["root"], volumes, inputs["model_keys"], settings, models=inputs["models"],
                         seed=inputs["seed"], cache_dir=inputs["cache_dir"])
show_skipped(result.skipped)  # a volume whose image or mask cannot be read is listed (file, problem), the others run
runs = result.runs
runs.pivot_table(index=["dataset", "model", "scheme"], values=["seconds", "encoded_slices"], aggfunc="median").round(1) \
    if not runs.empty else "no model could run in this profile"

# %% [markdown]
# ## Table X07a: median 3D Dice per scheme and model
#
# Median over volumes of the 3D Dice per structure, of `combined` (the study's "femur and tibia
# combined": the union of the femur and tibia masks, labels ignored; for the spine, which has
# neither, the union of its vertebral bodies; `combined_of` says which) and of `all_structures`
# (every scored bone, patella included: an extra the study does not report), with the model's
# parameter count and the median seconds per volume. Schemes a model cannot run (video schemes
# for image-only models) are absent here and listed in the run table (X07d).
#
# Reading the rows: LiteMedSAM, like MedSAM, was trained with box prompts only, so its point
# rows (points per slice, point carried) show what a box-only model does with a click, not what
# points can do. Carrying a box is a box-prompted model's way through a volume without memory;
# such a model finds *something* in every box, so how far it runs past a structure's end
# depends on the stopping rules (`video3d.carry`), and figure 7a shows where it drifts.

# %%
table = study.median_table(result.structures)
save_table(study.with_data_source(table.round(4), sources), cfg, "tableX07a_video3d_median_dice", notebook="07",
           caption="X07a: median 3D Dice per dataset, model and prompt scheme, per structure, combined (union of femur "
                   "and tibia, the SAM2 knee study's definition; spine: union of its vertebral bodies) and "
                   "all_structures (every bone, extra); parameter count and median seconds per volume.")
save_table(study.with_data_source(result.structures.round(4), sources), cfg, "tableX07b_video3d_structure_dice",
           notebook="07",
           caption="X07b: 3D Dice per volume, scheme, model and structure (and combined, all_structures, with the "
                   "structures each union joined), prompted slice, seconds per volume and parameter count.")
save_table(study.with_data_source(runs, sources), cfg, "tableX07d_video3d_runs", notebook="07",
           caption="X07d: every (model, scheme, volume): scored or why not, seconds, slices encoded, output NIfTI.")
table.round(3)

# %% [markdown]
# ## Table X07c: the published anchor
#
# The study that ran SAM2's video predictor on 488 OAI-ZIB DESS knee volumes (femur and tibia)
# reported a median 3D Dice of **0.9196** with one positive point per bone plus negative points
# on the other bones on the middle slice, propagated through the volume; per-slice point prompts
# were no better than a single point plus video. Below, that anchor beside what this profile
# regenerates with the same scheme, on the same definition: the median over volumes of the 3D
# Dice of the femur and tibia union (`median_3d_dice`), with the femur and tibia medians beside
# it (nothing where no SAM2 checkpoint is configured: the table says so rather than showing a
# number from another model).

# %%
anchor = study.anchor_table(result.structures, published_video3d(), models)
save_table(study.with_data_source(anchor, sources), cfg, "tableX07c_video3d_published_anchor", notebook="07",
           caption="X07c: published median 3D Dice (femur and tibia combined) of SAM2 video propagation on 3D knee MRI "
                   "beside the regenerated median of the femur-tibia union for the same scheme (or why none).")
anchor

# %% [markdown]
# ## Figure X07a: where propagation drifts
#
# Median slice Dice (band: inter-quartile range) against the distance from the prompted slice.
# Per-slice schemes are flat by construction (each slice has its own prompt); a propagating
# scheme that holds stays near them, one that drifts falls away with the distance. The far
# offsets rest on fewer structures (only the longest reach them).

# %%
fig = vplots.plot_dice_vs_offset(result.slices)
save_figure(fig, cfg, "figX07a_dice_vs_offset", notebook="07",
            data_source=study.sources_of(sources, result.slices["dataset"].unique() if not result.slices.empty else []),
            caption="Figure X07a: slice Dice against the offset from the prompted slice, median and IQR over volumes "
                    "and structures, per model and scheme.")

# %% [markdown]
# ## Figure X07b: 3D Dice per scheme
#
# The `combined` 3D Dice per volume (knee: femur and tibia union, the study's number; spine: its
# vertebral bodies), with the published anchor on the knee panels.

# %%
pub = published_video3d().dropna(subset=["dice"]).iloc[0]
fig = vplots.plot_scheme_dice(result.structures, anchor=float(pub["dice"]), anchor_anatomy="knee",
                              anchor_label=f"published: {pub['dice']:.4f} ({pub['study_scheme']}, {pub['dataset']})")
save_figure(fig, cfg, "figX07b_video3d_scheme_dice", notebook="07",
            data_source=study.sources_of(sources, result.structures["dataset"].unique()
                                         if not result.structures.empty else []),
            caption="Figure X07b: combined 3D Dice per volume (knee: union of femur and tibia, the SAM2 knee study's "
                    "definition; spine: union of the vertebral bodies), by scheme and model; bars are medians; "
                    "dotted (knee panels): the published SAM2 video anchor (OAI-ZIB femur and tibia, 0.9196).")

# %% [markdown]
# ## Figure X07c: an example volume
#
# Slices at fixed offsets from the prompted slice of the first volume, for the first of
# *points + negatives + video*, *1 point + video* or *box carried* that ran: manual contours
# solid, predicted dashed.

# %%
ex = study.example_stacks(result, volumes, settings)
if ex is None:
    print("no propagated volume to show in this profile")
else:
    fig = vplots.plot_example_slices(ex["image"], ex["gt"], ex["pred"], ex["prompt_slice"], list(v["example_offsets"]),
                                     label_names=ex["names"],
                                     title=f"{ex['model']} · {vplots.scheme_label(ex['scheme'])} · {ex['subject_id']}")
    save_figure(fig, cfg, "figX07c_video3d_example", notebook="07", data_source=sources.get(ex["dataset"], "synthetic"),
                caption="Figure X07c: one volume at offsets from the prompted slice; manual (solid) and predicted "
                        "(dashed) contours.")

# %% [markdown]
# ## Pipeline check: SAM2's video path with random weights
#
# Where no SAM2 checkpoint is configured (as on CI), the video schemes above did not run. This
# section runs them with a **randomly initialised** miniature SAM2 (256 px), through the same
# code, on the first volume, and times the in-memory frames against the sam2 package's JPEG
# route (`mskseg bench video3d`). Its Dice values say nothing about SAM2: they show that every
# scheme runs end to end and what feeding frames from memory costs.

# %%
if not v["pipeline_check"]:
    print("pipeline check: off in this profile (video3d.pipeline_check)")
elif volumes.empty:
    print("pipeline check: no volume in this profile")
else:
    from mskseg_lib.video3d.benchmark import bench_video3d
    from mskseg_lib.video3d.predictor import build_tiny_video_predictor, image_segmenter, parameter_count

    def tiny_sam2(key):
        predictor = build_tiny_video_predictor()
        return study.VideoModel(key, "SAM2 tiny config, random weights", image_segmenter(predictor, key, False),
                                predictor, parameter_count(predictor), {"random_init_seed": 0})

    check_root = inputs["root"].with_name(v["tag"] + "_pipeline_check")
    check = study.run_study(check_root, volumes.head(1), ["sam2_tiny_random"], settings, models=inputs["models"],
                            loader=tiny_sam2, seed=inputs["seed"], progress=False)
    display(check.runs[["dataset", "subject_id", "scheme", "status", "seconds", "encoded_slices"]].round(2))
    bench = bench_video3d(volumes.iloc[0].to_dict(), "tiny", repeats=1, settings=settings, models=inputs["models"])
    sources_of_first = sources.get(str(volumes.iloc[0]["dataset"]), "synthetic")
    timing = pd.DataFrame([{"route": "in-memory frames", "seconds_per_frame": bench["memory_s_per_frame"]},
                           {"route": "JPEG folder (write + init_state + track)", "seconds_per_frame": bench["jpeg_s_per_frame"]}])
    timing["frames"] = bench["n_frames"]
    save_table(timing.round(4), cfg, "tableX07e_video3d_frames_route_timing", notebook="07",
               data_source=sources_of_first,
               caption="X07e: pipeline check with a random miniature SAM2: seconds per frame, in-memory frames vs the "
                       "sam2 package's JPEG-folder route (timings of the plumbing, not of a real encoder).")
    print("JPEG route / in-memory:", round(bench["jpeg_over_memory"], 2),
          "| mask Dice between the routes (JPEG compression changes the pixels):",
          {k: round(x, 3) for k, x in bench["mask_dice_memory_vs_jpeg"].items()})
    display(timing.round(4))
