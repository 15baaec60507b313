"""The pitch benchmark's figures, written beside its JSON (matplotlib, Agg).

- ``pitch_subsets.png``: RPA of every tracker on every subset, grouped bars,
  with cadenza's RPA floor for the subset's condition as a red tick (cadenza's bars are black);
- ``pitch_errors.png``: per tracker, a histogram (log count) of the cent
  error (estimate minus truth) of the scored, truly voiced frames where it
  gives a pitch; 10-cent bins over ±1500 cents, the rest in the end bins;
  the ±50 cent band that RPA accepts is shaded.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def subsets_png(summary: dict, path: Path) -> None:
    """Grouped bars: one group per subset, one bar per tracker (RPA, 0.5-1 shown)."""
    plt = _plt()
    trackers = {n: e for n, e in summary["trackers"].items() if "error" not in e}
    keys = list(next(iter(trackers.values()))["subsets"])
    report = summary.get("goal_report", {}).get("subsets", {})  # cadenza's RPA floor per subset
    width = 0.85 / len(trackers)
    fig, ax = plt.subplots(figsize=(max(12.0, 0.55 * len(keys)), 5.5))
    x = np.arange(len(keys))
    for i, (name, e) in enumerate(trackers.items()):
        vals = [e["subsets"].get(k, {}).get("rpa", np.nan) for k in keys]
        ax.bar(x - 0.425 + (i + 0.5) * width, vals, width, label=name,
               color="black" if name == "cadenza" else None)
    for j, k in enumerate(keys):
        if k in report:
            ax.plot([j - 0.45, j + 0.45], [report[k]["rpa"]["target"]] * 2, color="red", lw=1)
    ax.set_xticks(x, keys, rotation=60, ha="right", fontsize=8)
    ax.set_ylim(0.5, 1.0)
    ax.set_ylabel("RPA (50 cents)")
    ax.set_title("Pitch: RPA per subset" + (" (--quick)" if summary.get("quick") else "")
                 + "; red: cadenza's floor")
    ax.legend(ncol=5, fontsize=8, loc="lower left")
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def errors_png(errors: dict[str, np.ndarray], path: Path) -> None:
    """One log-count histogram of cent errors per tracker, clipped to ±1500 cents."""
    plt = _plt()
    n = len(errors)
    cols = 3
    rows = int(np.ceil(n / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 2.8 * rows), sharex=True, squeeze=False)
    bins = np.arange(-1500, 1501, 10)
    for ax, (name, err) in zip(axes.flat, errors.items()):
        ax.hist(np.clip(err, -1495, 1495), bins=bins, color="black" if name == "cadenza" else "C0")
        ax.set_yscale("log")
        ax.axvspan(-50, 50, color="green", alpha=0.15)
        within = np.mean(np.abs(err) <= 50) if len(err) else np.nan
        ax.set_title(f"{name}: {within:.3f} within ±50 c", fontsize=9)
    for ax in axes.flat[n:]:
        ax.axis("off")
    for ax in axes[-1]:
        ax.set_xlabel("estimate − truth, cents")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
