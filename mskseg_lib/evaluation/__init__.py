"""Zero-shot evaluation of promptable segmenters on the prepared slices.

``prompting`` derives box prompts from the ground truth (optionally shifted), ``masks`` turns
decoder logits into one multi-class mask at the original slice size, ``metrics`` holds the
project's one Dice (and IoU, HD95) with its explicit empty-mask rule, ``embedding_cache`` keeps
image embeddings for reuse across prompt conditions and stages, ``zero_shot`` runs the whole
thing resumably (``run_zero_shot(prepared_dir, run_dir, model_keys, SliceSelection(...),
ZeroShotSettings(...))``), ``volumes`` segments every labelled slice and reassembles 3D label
volumes, ``aggregate`` summarises slice -> subject -> dataset / tissue / label, ``report`` lays out
the study's tables, ``overlays`` picks the QC samples (``plots.zero_shot`` draws them) and
``benchmark`` times the pipeline against the model's own compute. No function here reads a profile:
``mskseg_lib.from_profile.zero_shot`` unpacks one into these arguments.
"""
