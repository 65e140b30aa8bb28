"""mome: Mixture of Matryoshka Experts for LLM-based audio-visual speech recognition."""

__version__ = "0.1.0"
