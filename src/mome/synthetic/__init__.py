"""The synthetic audio-visual corpus: grammars, TTS, visemes, rendered faces, speakers and `mome synth`'s writer."""
