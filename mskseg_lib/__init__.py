"""mskseg: segment-anything foundation models on musculoskeletal MRI.

The library holds every step of the study; the numbered notebooks and the ``mskseg`` command
only call it. Stage packages follow the pipeline, and a module imports only from its own
package, earlier ones and the top-level utilities (no cycles):

``data`` (synthetic cohort, raw ingest, preparation, dataset naming and order) -> ``models``
(SAM, MedSAM, SAM2, LiteMedSAM behind one interface) -> ``evaluation`` (zero-shot engine, the
one Dice) -> ``finetuning`` (ablation grid, DDP training) -> ``stats`` (model comparisons,
mixed effects, agreement) -> ``biomarkers`` (thickness, T2, disc height, volumes) ->
``autolabel`` (detector prompts -> 3D labels) -> ``video3d`` (SAM2 video propagation) ->
``plots`` (figures; shared helpers in ``plots.panels``).

Top-level utilities, usable by every stage: ``errors`` (``UserError``), ``atomic`` (safe
writes), ``provenance`` (versions, git, fingerprints), ``settings`` (project folders),
``config`` (profiles and their schema), ``distributed`` (torchrun helpers), ``reference``
(published numbers), ``logging_setup`` (where log messages go).

Edges, which may import anything and are imported by nothing in the stages: ``from_profile``
(a profile -> each stage's explicit arguments), ``cli``, ``envcheck`` (an environment vs the lock),
``notebook_runner``, ``reporting``,
``companion``. Stage functions take paths, model keys and small settings dataclasses, never the
profile dict, so each can be called from a fresh notebook. Library modules report through
``logging.getLogger(__name__)``; the CLI and the notebooks show those messages
(:func:`mskseg_lib.logging_setup.configure_logging`).
"""
from mskseg_lib.settings import configure_environment

__version__ = "0.1.0"

configure_environment()
