"""The feature cache: the frozen encoders' outputs, computed once per utterance and condition, read by training
and evaluation instead of decoding media and running the encoders at every step.

    keys.py     what a cached feature depends on (encoder, media file, noise condition): its name in the cache
    store.py    memory-mapped fp16 shards with their indexes, written whole and renamed into place
    cache.py    `FeatureCache`: which entries a label file needs, and computing the missing ones
    dataset.py  `CachedAVDataset`: items that carry features instead of media; `make_dataset` picks one
    fill.py     `mome features`: every split of a config, in parallel worker processes

`mome features CONFIG` fills the cache ahead of time (`--shard I/N` splits the work over machines); `mome train`
and `mome eval` fill what is missing on first use when `data.feature_cache` names a directory.
"""
