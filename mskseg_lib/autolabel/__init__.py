"""AutoLabel: detector boxes prompt a segmenter, slice by slice, and a 3D label NIfTI comes out.

Every function takes explicit arguments (folders, dataset names, zoo keys, settings dataclasses
with the study's defaults); ``mskseg_lib.from_profile.autolabel`` builds them from a profile.

* :mod:`~mskseg_lib.autolabel.detector`: train, load and score ultralytics detectors (YOLO,
  RT-DETR) on the YOLO export of ``prepare`` (:class:`~mskseg_lib.autolabel.detector.DetectorSettings`).
* :mod:`~mskseg_lib.autolabel.inputs`: find and read the volumes to label (NIfTI files, DICOM
  series, folders of either).
* :mod:`~mskseg_lib.autolabel.postprocess`: per-label cleanup of the predicted label maps
  (:class:`~mskseg_lib.autolabel.postprocess.PostprocessSettings`).
* :mod:`~mskseg_lib.autolabel.pipeline`: one volume in, one label volume + detections out;
  resumable over a folder, split across torchrun ranks (:mod:`mskseg_lib.distributed`).
* :mod:`~mskseg_lib.autolabel.models`: which zoo and finetuned segmenters run, and which one a
  user gets.
* :mod:`~mskseg_lib.autolabel.run`: AutoLabel as a user runs it (``label_volumes``: model choice,
  rank pinning, provenance) and ``train_detectors`` (``mskseg train-detector``).
* :mod:`~mskseg_lib.autolabel.study`: notebook 06 (ground-truth boxes vs detector boxes).
* :mod:`~mskseg_lib.autolabel.prompt_tests`: table S71, the study's rank-sum test and the
  paired signed-rank test beside it.
"""
