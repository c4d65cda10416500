"""AutoLabel: detector boxes prompt a segmenter, slice by slice, and a 3D label NIfTI comes out.

* :mod:`~mskseg_lib.autolabel.detector`: train, load and score ultralytics detectors (YOLO,
  RT-DETR) on the YOLO export of ``prepare``.
* :mod:`~mskseg_lib.autolabel.inputs`: find and read the volumes to label (NIfTI files, DICOM
  series, folders of either).
* :mod:`~mskseg_lib.autolabel.postprocess`: per-label cleanup of the predicted label maps.
* :mod:`~mskseg_lib.autolabel.pipeline`: one volume in, one label volume + detections out;
  resumable over a folder, split across torchrun ranks.
* :mod:`~mskseg_lib.autolabel.study`: notebook 06 (ground-truth boxes vs detector boxes).
* :mod:`~mskseg_lib.autolabel.prompt_tests`: table S71, the study's rank-sum test and the
  paired signed-rank test beside it.
"""
