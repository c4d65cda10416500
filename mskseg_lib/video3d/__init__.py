"""3D volumes as videos: SAM2's video predictor fed from memory, and slice-to-slice propagation
for image-only models (notebook 07, ``mskseg video3d``).

Every function takes explicit arguments (folders, zoo keys, settings dataclasses with the
study's defaults); ``mskseg_lib.from_profile.video3d`` builds them from a profile.

* ``frames``: a volume's slices as the frames SAM2's video predictor reads, streamed from memory
  (no JPEG folder), and the JPEG-folder route of the sam2 package for comparison.
* ``predictor``: building SAM2's video predictor (real checkpoints or tiny random configs) and
  initialising its state from in-memory frames, with CPU offload when device memory is short.
* ``prompts``: the study's prompt schemes from a label volume (per-slice centroid points or boxes;
  one point per structure on the prompted slice, with or without negatives on the others).
* ``propagate``: running a scheme on one volume: SAM2 video propagation forward and backward,
  per-slice prompting, and mask-to-prompt carrying for models without memory (``CarrySettings``).
* ``scoring``: 3D Dice per structure and combined, and slice Dice against the offset from the
  prompted slice.
* ``study``: the notebook-07 comparison over volumes, models and schemes, resumable
  (``Video3dSettings``, ``run_study``).
* ``segment``: one volume from a user's clicks or a detector's boxes (``segment_file``).
* ``benchmark``: in-memory frames against the JPEG route (``mskseg bench video3d``).
"""
