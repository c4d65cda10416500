"""Zero-shot evaluation of promptable segmenters on the prepared slices.

``prompting`` derives box prompts from the ground truth (optionally shifted), ``masks`` turns
decoder logits into one multi-class mask at the original slice size, ``metrics`` scores it with
MONAI, ``embedding_cache`` keeps image embeddings for reuse across prompt conditions,
``zero_shot`` runs the whole thing resumably, ``aggregate`` summarises slice -> subject ->
dataset / tissue / label, and ``overlays`` draws QC panels.
"""
