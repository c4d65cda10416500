"""Quantitative MSK biomarkers measured from label volumes, with their real voxel spacing.

One interface (:mod:`.common`): a biomarker takes an integer label volume (0 = background), its
spacing in mm, a ``labels`` mapping ``{structure name: label value or values}``, the slice axis
(default: last) and, where it needs one, a map; it returns a
:class:`~mskseg_lib.biomarkers.common.BiomarkerResult` with ``per_slice`` and ``per_subject``
tables whose value columns carry their unit (``thickness_mm``, ``t2_ms``, ``disc_height_mm``,
``volume_cm3``). An absent structure is NaN with ``reason == "empty mask"``, never 0.

Modules:

* :mod:`.common`: ``BiomarkerResult``, input checks (clear ``ValueError`` on bad input),
  the empty-mask rule and small geometry helpers;
* :mod:`.thickness`: cartilage thickness per slice (``cartilage_thickness``) and in 3D
  (``cartilage_thickness_3d``): chords through the skeleton along the normal, to the sub-pixel
  boundary (no half-pixel bias of the raw distance transform); the project's validated measure;
* :mod:`.thickness_study`: the study's medial-axis EDT thickness in its two readings
  (``study_thickness``: ``study_text``, EDT radius x pixel spacing; ``study_code``, EDT radius in
  pixels x slice thickness), shown beside the chord method;
* :mod:`.relaxometry`: mean T2 / T1rho per compartment (``relaxation_time``, maps clipped to
  0-100 ms; per subject the mean of slice means as the study, plus a ``total`` over compartments,
  with the voxel-weighted mean as a labelled variant) and the vectorised mono-exponential fit
  (``fit_monoexponential`` / ``fit_t2_monoexponential``);
* :mod:`.disc_height`: intervertebral disc height from the minimum-area rectangle in mm
  (``disc_height``, with the study's pixel-centre rectangle beside it;
  ``disc_height_through_slices`` for axial stacks);
* :mod:`.volume`: tissue volume in cm3 per label and in total (``tissue_volume``);
* :mod:`.cohort_truth`: measure a synthetic-cohort subject and line the values up with the
  cohort's ``truth.json`` (every definition against its biomarker's truth);
* :mod:`.study`: notebook 05's measurement layer: which subjects (``BiomarkerSelection``,
  ``choose_subjects``), every biomarker of manual and predicted masks (``measure_all``), their
  agreement per predicting source (``agreement_by_source``, computed by
  :mod:`mskseg_lib.stats.agreement`), errors against the cohort's truth, the S39-S64 numbering
  and the study's printed agreement ranges.
"""
