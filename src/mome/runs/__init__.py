"""A run's stored files: a run folder holds `config.yaml`, `precision.json`, `metrics.csv`, `checkpoints/step-*.pt`
(each with its `.sha256`, `latest`), `calibration.json` after `mome calibrate` and `eval/<labels>/`; an export
(`mome export`) holds the trainable weights, config and base-model hashes of one checkpoint, and loads the same."""

CALIBRATION_FILE = "calibration.json"
"""The cascade's threshold in a run folder or an export (`evaluation.cascade`, `mome calibrate`)."""
