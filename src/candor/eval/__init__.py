"""Measured truth: accuracy, calibrated similarity and demographic differentials.

``candor eval`` (see :mod:`candor.cli.eval`) runs these on folders of photos:

- :mod:`candor.eval.datasets` and :mod:`candor.eval.pairs` read image sets and pair lists
  (LFW pairs format, CSV, ``<person>/<photo>`` folders, labels CSVs);
- :mod:`candor.eval.embeddings` embeds them through the :class:`candor.face.engine.Engine`, on every
  core, cached by file hash in the data dir;
- :mod:`candor.eval.metrics` holds the error-rate arithmetic (ROC, AUC, EER, TAR@FAR, FMR/FNMR,
  k-fold accuracy, bootstrap intervals over people), shared by every evaluation;
- :mod:`candor.eval.verification`, :mod:`candor.eval.calibration` and :mod:`candor.eval.fairness`
  are the three evaluations; :mod:`candor.eval.report` writes their JSON and HTML.
"""
