"""Time `mome synth` for N utterances and print utterances per second and the machine load.

python benchmarks/synth_speed.py --utterances 2000 --out /tmp/synth_bench
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time

from mome.synthetic.corpus import synthesize_corpus


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--utterances", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="/tmp/mome_synth_bench")
    parser.add_argument("--workers", type=int, default=None)
    args = parser.parse_args()
    shutil.rmtree(args.out, ignore_errors=True)
    load_before = os.getloadavg()
    start = time.perf_counter()
    report = synthesize_corpus(args.out, args.utterances, args.seed, workers=args.workers)
    seconds = time.perf_counter() - start
    result = {
        "utterances": report["written"],
        "seconds": round(seconds, 1),
        "utterances_per_s": round(report["written"] / seconds, 2),
        "cores": os.cpu_count(),
        "loadavg_before": load_before,
        "loadavg_after": os.getloadavg(),
        "speech_minutes": round(report["hours"] * 60, 1),
        "skipped": len(report["skipped"]),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
