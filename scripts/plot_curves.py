"""Plot a training run's loss curves (train, validation per task) from RUN/metrics.jsonl.

    python scripts/plot_curves.py RUN [--out curves.png]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run", help="run directory holding metrics.jsonl")
    p.add_argument("--out", help="PNG path (default RUN/curves.png)")
    a = p.parse_args()
    rows = [json.loads(line) for line in (Path(a.run) / "metrics.jsonl").read_text().splitlines()]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.5))
    steps = [r["step"] for r in rows]
    ax1.plot(steps, [r["loss"] for r in rows], lw=0.8, alpha=0.6, label="train (batch)")
    val = [r for r in rows if "val_loss" in r]
    ax1.plot([r["step"] for r in val], [r["val_loss"] for r in val], "k-o", ms=3, label="validation (all)")
    tasks = sorted({k.split("/")[1] for r in val for k in r if k.startswith("val/")})
    colors = plt.get_cmap("tab10")
    for i, t in enumerate(tasks):
        c = colors(i + 2)
        ax1.plot([r["step"] for r in val], [r[f"val/{t}/loss"] for r in val], "--", lw=1, color=c, label=f"val {t}")
        ax2.plot([r["step"] for r in val], [r[f"val/{t}/action_acc"] for r in val], "-o", ms=3, color=c, label=t)
    ax1.set(xlabel="step", ylabel="action-token cross-entropy", yscale="log", title="loss")
    ax2.set(xlabel="step", ylabel="held-out action-token accuracy", ylim=(0, 1), title="action accuracy")
    ax1.legend(fontsize=7)
    ax2.legend(fontsize=7)
    fig.tight_layout()
    out = Path(a.out or Path(a.run) / "curves.png")
    fig.savefig(out, dpi=110)
    last = val[-1] if val else {}
    print(f"wrote {out}")
    for t in tasks:
        print(f"{t:24} val loss {last.get(f'val/{t}/loss', float('nan')):.3f}  "
              f"action acc {last.get(f'val/{t}/action_acc', float('nan')):.3f}")


if __name__ == "__main__":
    main()
