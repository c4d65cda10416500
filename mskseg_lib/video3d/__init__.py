"""3D volumes as videos: SAM2's video predictor fed from memory, and slice-to-slice propagation
for image-only models (notebook 07).

* ``frames``: a volume's slices as the frames SAM2's video predictor reads, streamed from memory
  (no JPEG folder), and the JPEG-folder route of the sam2 package for comparison.
* ``predictor``: building SAM2's video predictor (real checkpoints or tiny random configs) and
  initialising its state from in-memory frames, with CPU offload when device memory is short.
* ``prompts``: the study's prompt schemes from a label volume (per-slice centroid points or boxes;
  one point per structure on the prompted slice, with or without negatives on the others).
* ``propagate``: running a scheme on one volume: SAM2 video propagation forward and backward,
  per-slice prompting, and mask-to-prompt carrying for models without memory.
* ``scoring``: 3D Dice per structure and combined, and slice Dice against the offset from the
  prompted slice.
* ``study``: the notebook-07 comparison over volumes, models and schemes, resumable.
"""
