"""The shared rates: exact division, and the encoder frame rates against what the encoders really do."""

import pytest
import torch

from mome.constants import AVHUBERT_FRAME_RATE, FPS, SAMPLE_RATE, SAMPLES_PER_FRAME, WHISPER_FRAME_RATE, exact_div
from tiny import TINY_WHISPER


def test_exact_div_refuses_a_remainder():
    assert exact_div(16_000, 25) == 640
    with pytest.raises(ValueError, match="16000 is not a multiple of 30"):
        exact_div(16_000, 30)


def test_a_clip_second_is_whole_frames_and_samples():
    assert SAMPLES_PER_FRAME * FPS == SAMPLE_RATE


def test_whisper_frame_rate_is_the_encoders():
    """The constant against the real front end: samples per encoder frame, from the extractor's hop and the
    convolution strides of a (tiny, random) Whisper encoder."""
    from mome.models.whisper_encoder import WhisperAudioEncoder

    torch.manual_seed(0)
    encoder = WhisperAudioEncoder(TINY_WHISPER)
    assert encoder.samples_per_frame * WHISPER_FRAME_RATE == SAMPLE_RATE
    assert encoder.frame_rate == WHISPER_FRAME_RATE


def test_avhubert_gives_one_feature_per_video_frame():
    from mome.models.avhubert import build_avhubert

    torch.manual_seed(0)
    model = build_avhubert("tiny").eval()
    with torch.no_grad():
        features = model(torch.randn(1, 2 * FPS, 1, 24, 24))[0]
    assert features.shape[1] == 2 * AVHUBERT_FRAME_RATE and model.frame_rate == AVHUBERT_FRAME_RATE
