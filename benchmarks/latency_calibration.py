"""Print the performance model's calibration table (docs/latency.md): every published point, predicted with the
shipped device profiles, and the fitted factors re-derived from edgeslm/latency/published.toml.

    .venv/bin/python benchmarks/latency_calibration.py > /tmp/table.md
"""

from __future__ import annotations

from edgeslm.latency.calibration import evaluate, fit


def main() -> None:
    print("| point | device | fit | decode published | predicted | error | prefill published | predicted | error |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in evaluate():
        pre = (f"{r['published_prefill']:.1f} | {r['predicted_prefill']:.1f} | {r['prefill_error']:+.0%}"
               if "published_prefill" in r else "— | — | —")
        fit_label = {True: "fitted", False: "check", "prefill": "prefill fitted"}[r["fit"]]
        print(f"| {r['id']} | {r['device']} | {fit_label} | {r['published_decode']:.1f} | "
              f"{r['predicted_decode']:.1f} | {r['decode_error']:+.0%} | {pre} |")
    print()
    print("| device | backend | kind | factor | fitted value |")
    print("|---|---|---|---|---|")
    for (device, backend, kind), values in fit().items():
        for k, v in values.items():
            print(f"| {device} | {backend} | {kind} | {k} | {v:.3f} |")


if __name__ == "__main__":
    main()
