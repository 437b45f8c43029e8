"""Evaluation reports: report.md (files beside it) and a self-contained report.html (everything inline).

Both are built from scores.json and the videos an evaluation wrote, so `generalist report DIR`
can rebuild them at any time.
"""

from __future__ import annotations

import base64
import html
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from generalist import envs, wandb_run
from generalist.eval.scores import normalized

# each domain's chart colour, as its env module declares it (`Display.color`)
DOMAIN_COLORS = {spec.domain: spec.display.color for spec in envs.TASKS.values()}
FILES = "report_files"


def _by_domain(scores: dict[str, Any]) -> list[str]:
    return sorted(scores["tasks"], key=lambda t: (scores["tasks"][t]["domain"], t))


def _norm_ci(v: dict[str, Any]) -> tuple[float, float]:
    lo, hi = (normalized(x, v["expert_mean"], v["random_mean"]) for x in v["agent_ci95"])
    return (lo, hi) if lo <= hi else (hi, lo)


def plot_normalized(scores: dict[str, Any], path: Path) -> Path:
    """Bar chart of expert-normalized scores with 95% intervals, tasks grouped (and coloured) by domain."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = _by_domain(scores)
    vals = [scores["tasks"][t]["normalized"] for t in tasks]
    cis = [_norm_ci(scores["tasks"][t]) for t in tasks]
    err = np.array([[v - lo for v, (lo, _) in zip(vals, cis, strict=True)],
                    [hi - v for v, (_, hi) in zip(vals, cis, strict=True)]]).clip(min=0)
    doms = [scores["tasks"][t]["domain"] for t in tasks]
    fig, ax = plt.subplots(figsize=(max(5.0, 0.9 * len(tasks) + 2), 4.2), dpi=100)
    ax.bar(range(len(tasks)), vals, yerr=err, capsize=4,
           color=[DOMAIN_COLORS.get(d, "#8172B3") for d in doms], edgecolor="black", linewidth=0.5)
    ax.axhline(0.0, color="grey", lw=1, ls="--")
    ax.axhline(1.0, color="black", lw=1, ls=":")
    ax.text(-0.55, 1.0, "expert", va="bottom", ha="left", fontsize=8)
    ax.text(-0.55, 0.0, "random", va="top", ha="left", fontsize=8, color="grey")
    ax.set_ylim(min(-0.15, float(np.min([lo for lo, _ in cis])) - 0.05),
                max(1.15, float(np.max([hi for _, hi in cis])) + 0.05))
    ax.set_xticks(range(len(tasks)), tasks, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("expert-normalized score")
    ax.set_xlim(-0.6, len(tasks) - 0.4)
    seen: dict[str, None] = dict.fromkeys(doms)
    ax.legend(handles=[plt.Rectangle((0, 0), 1, 1, color=DOMAIN_COLORS.get(d, "#8172B3")) for d in seen],
              labels=list(seen), loc="upper center", bbox_to_anchor=(0.5, -0.42), ncol=len(seen), fontsize=8,
              frameon=False)
    a = scores["aggregate"]
    ax.set_title(f"{scores['policy']}: mean {a['mean']:.2f}, IQM {a['iqm']:.2f} over {a['tasks']} tasks "
                 f"({scores['episodes']} episodes each)", fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def plot_returns(scores: dict[str, Any], path: Path) -> Path:
    """Per task: episode returns of the evaluated policy, the expert and the random policy (box + points)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = _by_domain(scores)
    cols = min(4, len(tasks))
    rows = math.ceil(len(tasks) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.8 * rows), dpi=100, squeeze=False)
    rng = np.random.default_rng(0)
    for ax, t in zip(axes.flat, tasks, strict=False):
        v = scores["tasks"][t]
        groups = [v["returns"], v["expert_returns"], v["random_returns"]]
        names = [scores["policy"], "expert", "random"]
        ax.boxplot(groups, showfliers=False, widths=0.5)
        for i, g in enumerate(groups):
            ax.scatter(i + 1 + rng.uniform(-0.15, 0.15, len(g)), g, s=6, alpha=0.6,
                       color=DOMAIN_COLORS.get(v["domain"], "#8172B3") if i == 0 else "grey")
        ax.set_xticks([1, 2, 3], names, fontsize=8)
        ax.set_title(t, fontsize=9)
        ax.tick_params(axis="y", labelsize=7)
    for ax in list(axes.flat)[len(tasks):]:
        ax.axis("off")
    fig.suptitle("episode returns", fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def _fmt(x: float | None, nd: int = 2) -> str:
    return "" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{nd}f}"


def _task_rows(scores: dict[str, Any]) -> list[list[str]]:
    rows = []
    for t in _by_domain(scores):
        v = scores["tasks"][t]
        lo, hi = v["agent_ci95"]
        rows.append([t, v["domain"], _fmt(v["agent_mean"]), f"[{_fmt(lo)}, {_fmt(hi)}]", _fmt(v["expert_mean"]),
                     _fmt(v["random_mean"]), _fmt(v["normalized"], 3),
                     _fmt(v.get("success_rate")) if "success_rate" in v else "—",
                     _fmt(v["episode_length_mean"], 0), str(v["episodes"])])
    return rows


TASK_HEADER = ["task", "domain", "mean return", "95% CI", "expert", "random", "normalized", "success",
               "length", "episodes"]
AGG_HEADER = ["over", "tasks", "mean [95% CI]", "median [95% CI]", "IQM [95% CI]", "≥ 50% expert", "≥ 80% expert"]


def _agg_rows(scores: dict[str, Any]) -> list[list[str]]:
    def row(name: str, a: dict[str, Any]) -> list[str]:
        cell = [f"{_fmt(a[k], 3)} [{_fmt(a[k + '_ci95'][0], 3)}, {_fmt(a[k + '_ci95'][1], 3)}]"
                for k in ("mean", "median", "iqm")]
        return [name, str(a["tasks"]), *cell, str(a["tasks_over_50"]), str(a["tasks_over_80"])]

    return [row("all tasks", scores["aggregate"])] + [row(d, a) for d, a in scores.get("domains", {}).items()]


def _md_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def _intro(scores: dict[str, Any]) -> str:
    what = f"checkpoint `{scores['checkpoint']}`" if scores.get("checkpoint") else f"the {scores['policy']} policy"
    return (f"Evaluation of {what}: {scores['episodes']} episodes per task on seeds {scores['seed']}.."
            f"{scores['seed'] + scores['episodes'] - 1} (no dataset uses them). Normalized score = "
            f"(mean return − random) / (expert − random): 0 is random, 1 is the expert.")


def _video_caption(scores: dict[str, Any], task: str) -> str:
    v = scores["videos"][task]
    side = f"{scores['policy']} (left) vs expert (right)" if "expert_return" in v else scores["policy"]
    ret = f"return over the clip {v['agent_return']:.1f}"
    if "expert_return" in v:
        ret += f" vs {v['expert_return']:.1f}"
    return f"{task}: {side}, seed {v['seed']}, first {v['frames']} frames; {ret}"


def write_markdown(out: Path, scores: dict[str, Any]) -> Path:
    parts = [f"# Evaluation report: {scores['policy']}", "", _intro(scores), "", "## Aggregate", "",
             _md_table(AGG_HEADER, _agg_rows(scores)), "", "## Per task", "",
             _md_table(TASK_HEADER, _task_rows(scores)), "", "## Normalized scores", "",
             f"![normalized scores]({FILES}/normalized.png)", "", "## Return distributions", "",
             f"![returns]({FILES}/returns.png)", ""]
    if scores.get("videos"):
        parts += ["## Videos", ""]
        for t in _by_domain(scores):
            if t in scores["videos"]:
                parts += [f"**{_video_caption(scores, t)}**", "", f"![{t}](videos/{scores['videos'][t]['path']})", ""]
    return _write_text(out / "report.md", "\n".join(parts))


def _data_uri(path: Path, mime: str) -> str:
    return f"data:{mime};base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def _html_table(header: list[str], rows: list[list[str]], cls: str) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


CSS = """body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:1em 0;font-size:14px}th,td{border:1px solid #ccc;padding:4px 8px;text-align:right}
th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}img{max-width:100%}
.videos{display:flex;flex-wrap:wrap;gap:1em}.videos figure{margin:0;max-width:360px}
figcaption{font-size:12px;color:#555}"""

# On load, <body> gets data-images="decoded/total" and data-errors="<count>" (script errors seen on the
# page): what the headless-browser check (generalist.eval.html_check) reads back from the DOM.
CHECK_JS = """window.__errors=0;window.addEventListener('error',e=>{if(e instanceof ErrorEvent)window.__errors++;},true);
window.addEventListener('load',()=>{const im=[...document.images];
document.body.dataset.images=im.filter(i=>i.complete&&i.naturalWidth>0).length+'/'+im.length;
document.body.dataset.errors=String(window.__errors);});"""


def write_html(out: Path, scores: dict[str, Any]) -> Path:
    """One file, images and videos inline as data URIs: it opens offline and can be mailed around."""
    img = lambda p, alt: f'<img alt="{alt}" src="{_data_uri(p, "image/png")}">'  # noqa: E731
    parts = [f"<h1>Evaluation report: {html.escape(scores['policy'])}</h1>",
             f"<p>{html.escape(_intro(scores))}</p>",
             "<h2>Aggregate</h2>", _html_table(AGG_HEADER, _agg_rows(scores), "aggregate"),
             "<h2>Per task</h2>", _html_table(TASK_HEADER, _task_rows(scores), "tasks"),
             "<h2>Normalized scores</h2>", img(out / FILES / "normalized.png", "normalized scores"),
             "<h2>Return distributions</h2>", img(out / FILES / "returns.png", "return distributions")]
    if scores.get("videos"):
        parts.append('<h2>Videos</h2><div class="videos">')
        for t in _by_domain(scores):
            if t in scores["videos"]:
                gif = out / "videos" / scores["videos"][t]["path"]
                parts.append(f'<figure><img alt="{t}" src="{_data_uri(gif, "image/gif")}">'
                             f"<figcaption>{html.escape(_video_caption(scores, t))}</figcaption></figure>")
        parts.append("</div>")
    doc = (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>generalist report</title>'
           f"<style>{CSS}</style><script>{CHECK_JS}</script></head><body>{''.join(parts)}</body></html>")
    return _write_text(out / "report.html", doc)


def _write_text(path: Path, text: str) -> Path:
    tmp = path.with_name(path.name + ".part")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
    return path


def write(out: Path, scores: dict[str, Any] | None = None) -> tuple[Path, Path]:
    """Charts, report.md and report.html for an evaluation directory (scores read from it if not given)."""
    out = Path(out)
    if scores is None:
        scores = json.loads((out / "scores.json").read_text())
    plot_normalized(scores, out / FILES / "normalized.png")
    plot_returns(scores, out / FILES / "returns.png")
    return write_markdown(out, scores), write_html(out, scores)


def log_wandb(out: Path, scores: dict[str, Any], mode: str, checkpoint: Path | None) -> None:
    """The per-task table, the aggregate, both charts and the videos to a W&B run (job_type 'eval')."""
    import wandb  # lazy: a heavy optional dependency (for its Table, Image and Video types)

    run_dir = Path(checkpoint).resolve().parent.parent if checkpoint else None  # RUN/checkpoints/step_N
    run_name = f"{run_dir.parent.name}/{run_dir.name}" if run_dir else None
    run = wandb_run.start(mode, "eval", scores.get("config", {}), dir=str(out), group=run_name)
    try:
        run.log({
            "eval/tasks": wandb.Table(columns=TASK_HEADER, data=_task_rows(scores)),
            "eval/aggregate": wandb.Table(columns=AGG_HEADER, data=_agg_rows(scores)),
            "eval/normalized_chart": wandb.Image(str(out / FILES / "normalized.png")),
            "eval/returns_chart": wandb.Image(str(out / FILES / "returns.png")),
            **{f"eval/video/{t}": wandb.Video(str(out / "videos" / v["path"]), format="gif")
               for t, v in scores.get("videos", {}).items()},
        })
        for k in ("mean", "median", "iqm", "tasks_over_50", "tasks_over_80"):
            run.summary[f"eval/{k}"] = scores["aggregate"][k]
        for t, v in scores["tasks"].items():
            run.summary[f"eval/{t}/normalized"] = v["normalized"]
    finally:
        run.finish()
