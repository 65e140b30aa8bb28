"""A run's stored files. A run folder holds `config.yaml`, `precision.json`, `metrics.csv`, `tensorboard/`,
`checkpoints/step-*.pt` (each with its `.sha256`; `latest`), `calibration.json` after `mome calibrate` and
`eval/<labels>/`; an export (`mome export`) holds one checkpoint's weights, config and base-model hashes."""

CALIBRATION_FILE = "calibration.json"
"""The cascade's threshold in a run folder or an export (`evaluation.cascade`, `mome calibrate`)."""
