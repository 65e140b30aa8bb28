"""The feature cache's size at LRS3 scale under each way of storing it, derived from a preset (no data needed).

    python benchmarks/cache_size.py                                  # paper-mome-23-4-mhsa
    python benchmarks/cache_size.py --preset paper-llama-avsr --noisy 4 2 1 --hours 30

Bytes per second of training speech come from the config (`mome.features.sizes`): each encoder's frame rate
and width, the compression rates, and the audio versions cached per utterance (clean + K noisy). Storage options:

    full       the encoders' outputs at their frame rate (what `mome train` caches today)
    pooled     only what training reads: the features pooled at each configured rate
    video only the audio encoded at every step, noise mixed per epoch on the fly (no audio versions to store);
               the video full or pooled

each with the config's K noisy versions and with each `--noisy` K. Sizes in GB and TB of 1e9 / 1e12 bytes for
`--hours` of training speech (default: LRS3, 433 h, and LRS3 + VoxCeleb2, 1,759 h), training split only.
"""

from __future__ import annotations

import argparse
import json

from mome.config import load_config
from mome.features.sizes import Storage, audio_versions, bytes_per_second

CORPORA = {"LRS3": 433.0, "LRS3+VoxCeleb2": 1759.0}
"""Hours of training speech (the corpus sizes the paper and its neighbours quote)."""


def storages(default_store: str, default_noisy: int, noisy: list[int]) -> list[Storage]:
    options = []
    for store in ("full", "pooled"):
        for k in dict.fromkeys([default_noisy, *noisy]):
            options.append(
                Storage(
                    f"{store}, K={k}" + (" (default)" if store == default_store and k == default_noisy else ""),
                    store,
                    store,
                    k,
                )
            )
    options.append(Storage("video only, noise on the fly", "none", "full", 0))
    options.append(Storage("video only pooled, noise on the fly", "none", "pooled", 0))
    return options


def human(n: float) -> str:
    return f"{n / 1e12:.2f} TB" if n >= 1e12 else f"{n / 1e9:.0f} GB"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="paper-mome-23-4-mhsa", help="a preset or config file")
    parser.add_argument("--override", action="append", default=[], help="KEY=VALUE, repeatable")
    parser.add_argument("--noisy", type=int, nargs="*", default=[2, 1], help="other K: noisy versions per utterance")
    parser.add_argument("--hours", type=float, nargs="*", help="hours of training speech (default: LRS3, +VoxCeleb2)")
    parser.add_argument("--json", help="also write the table here")
    args = parser.parse_args()

    cfg = load_config(args.preset, args.override)
    corpora = {f"{h:g} h": h for h in args.hours} if args.hours else {f"{k} {h:,.0f} h": h for k, h in CORPORA.items()}
    rows = []
    for storage in storages(cfg.data.feature_cache_store, cfg.data.feature_noisy_versions, args.noisy):
        per_second = bytes_per_second(cfg, storage)
        total = sum(per_second.values())
        versions = audio_versions(cfg.data, storage.noisy_versions) if storage.audio != "none" else 0
        rows.append(
            {
                "storage": storage.name,
                "audio_versions": versions,
                "bytes_per_second": per_second,
                "total": total,
                "sizes": {name: total * hours * 3600 for name, hours in corpora.items()},
            }
        )
    comp = cfg.model.compression
    print(
        f"{args.preset}: audio rates {comp.audio_rates}, video rates {comp.video_rates} ({comp.mode}); "
        f"fp16; train_snrs {cfg.data.train_snrs}"
    )
    heads = ["storage", "audio versions", "audio B/s", "video B/s", "total B/s", *corpora]
    table = [
        [
            r["storage"],
            str(r["audio_versions"]),
            f"{r['bytes_per_second'].get('audio', 0):,.0f}",
            f"{r['bytes_per_second'].get('video', 0):,.0f}",
            f"{r['total']:,.0f}",
            *(human(r["sizes"][c]) for c in corpora),
        ]
        for r in rows
    ]
    widths = [max(len(h), *(len(row[i]) for row in table)) for i, h in enumerate(heads)]
    for row in [heads, *table]:
        print("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"preset": args.preset, "overrides": args.override, "rows": rows}, f, indent=2)


if __name__ == "__main__":
    main()
