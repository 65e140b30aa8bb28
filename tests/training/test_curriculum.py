"""The clean-audio curriculum as a share of the run's steps (`data.clean_steps_share`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from mome.config import load_config
from mome.errors import ConfigError
from mome.training.recipe import Trainer

FAST = ["data.max_frames=120", "data.num_workers=0", "train.num_threads=1", "data.train_snrs=[0, 5]"]


def test_the_share_becomes_whole_epochs_of_the_planned_steps() -> None:
    data = load_config("tiny", ["data.clean_steps_share=0.6"]).data
    assert data.curriculum
    assert data.clean_epochs_for(total_steps=1200, steps_per_epoch=154) == 5  # 720 steps
    assert data.clean_epochs_for(total_steps=600, steps_per_epoch=154) == 2  # 360 steps: a slower machine
    assert data.clean_epochs_for(total_steps=100, steps_per_epoch=154) == 0
    epochs = load_config("tiny", ["data.clean_epochs=5"]).data
    assert epochs.clean_epochs_for(total_steps=600, steps_per_epoch=154) == 5  # a count, whatever the run's length
    assert not load_config("tiny", []).data.curriculum


def test_the_share_and_an_epoch_count_are_not_both_set() -> None:
    with pytest.raises(ConfigError, match="data.clean_steps_share: set it or data.clean_epochs"):
        load_config("tiny", ["data.clean_steps_share=0.5", "data.clean_epochs=2"])


@pytest.mark.slow
@pytest.mark.parametrize(("steps", "expected"), [(40, 2), (8, 0)])
def test_the_trainer_gives_the_training_set_its_clean_epochs(
    train_corpus: Path, tmp_path: Path, steps: int, expected: int
) -> None:
    """The same share gives a long run more clean epochs than a short one, each in proportion to its steps."""
    cfg = load_config(
        "tiny",
        [
            f"data.root={train_corpus}",
            f"train.output_dir={tmp_path / 'run'}",
            f"train.max_steps={steps}",
            "data.clean_steps_share=0.5",
            *FAST,
        ],
    )
    trainer = Trainer(cfg).setup()
    per_epoch = len(trainer.sampler)
    assert trainer.train_set.clean_epochs == round(0.5 * steps / per_epoch) == expected, per_epoch
    trainer.train_set.set_epoch(0)
    snrs = {trainer.train_set[i]["meta"]["snr"] for i in range(len(trainer.train_set))}
    if expected:
        assert snrs == {None}
    else:
        assert snrs and snrs <= {0.0, 5.0}
