"""The report's figures as PNG files (matplotlib, Agg backend: no display needed).

Each function returns the path it wrote, or None when the run holds no data for that figure (the report then
says so instead of showing an empty plot).
"""

from __future__ import annotations

from pathlib import Path

import matplotlib as mpl

mpl.use("Agg")
import matplotlib.pyplot as plt  # after mpl.use: the backend is chosen first
import numpy as np
import pandas as pd
from matplotlib.axis import Axis
from matplotlib.patches import Patch
from matplotlib.ticker import FuncFormatter

from analysis import paper
from analysis.load import Results

BASELINE_COLOR = "#1f77b4"
# function platforms take these in report order (the first, the paper's function, red as in earlier reports)
FUNCTION_COLORS = ("#d62728", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf")
PARTS = (("network_http_ms", "network/HTTP (client - server)", "#9ecae1"),
         ("runtime_ms", "runtime (server - prediction)", "#fdae6b"),
         ("model_ms", "model (prediction)", "#74c476"))
DPI = 120
MS = FuncFormatter(lambda v, _pos: f"{v:g}")
# Log axes spanning less than a decade only have minor ticks; label the 2s and 5s among them, plainly.
MS_MINOR = FuncFormatter(lambda v, _pos: f"{v:g}" if f"{v:e}"[0] in "25" else "")


def _log_axis(axis: Axis) -> None:
    axis.set_major_formatter(MS)
    axis.set_minor_formatter(MS_MINOR)


def _label(results: Results, platform: str) -> str:
    kind = results.platform_setting(platform, "kind") or ""
    return f"{platform} ({kind})" if kind else platform


def _color(platform: str, results: Results) -> str:
    if platform == results.baseline:
        return BASELINE_COLOR
    functions = results.function_platforms
    return FUNCTION_COLORS[functions.index(platform) % len(FUNCTION_COLORS)] if platform in functions else "#555555"


def _save(fig: plt.Figure, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def response_vs_concurrency(conc: pd.DataFrame, results: Results, path: Path) -> Path | None:
    """Mean response time per concurrency with its t-interval across repetitions; the paper's Kubeless points."""
    if not len(conc):
        return None
    fig, ax = plt.subplots(figsize=(8, 5))
    for platform in results.platforms:
        d = conc[conc["platform"] == platform]
        if not len(d):
            continue
        err = np.vstack([d["mean_ms"] - d["mean_ms_ci_low"], d["mean_ms_ci_high"] - d["mean_ms"]])
        ax.errorbar(d["concurrency"], d["mean_ms"], yerr=np.nan_to_num(err), marker="o", capsize=4,
                    color=_color(platform, results), label=f"{_label(results, platform)}: mean, 95 % CI")
        ax.fill_between(d["concurrency"], d["min_ms"], d["max_ms"], color=_color(platform, results), alpha=0.08,
                        label=f"{platform}: fastest to slowest request")
    xs = sorted(paper.FIG1_FUNCTION_MS)
    means = [paper.FIG1_FUNCTION_MS[c]["mean_ms"] for c in xs]
    lo = [paper.FIG1_FUNCTION_MS[c]["mean_ms"] - paper.FIG1_FUNCTION_MS[c].get("min_ms", means[i])
          for i, c in enumerate(xs)]
    hi = [paper.FIG1_FUNCTION_MS[c].get("max_ms", means[i]) - paper.FIG1_FUNCTION_MS[c]["mean_ms"]
          for i, c in enumerate(xs)]
    ax.errorbar(xs, means, yerr=[lo, hi], fmt="D", color="black", capsize=6, markersize=7,
                label="paper, Kubeless (c=20 bar: fastest 472 ms to slowest ~1 s)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    levels = sorted(set(conc["concurrency"]) | set(xs))
    ax.set_xticks(levels)
    ax.xaxis.set_major_formatter(MS)
    ax.xaxis.set_minor_formatter(FuncFormatter(lambda _v, _p: ""))
    _log_axis(ax.yaxis)
    ax.set_xlabel("concurrent requests (ab -c)")
    ax.set_ylabel("response time (ms, log scale)")
    ax.set_title("Mean response time vs concurrency (paper Fig. 1)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="upper left")
    return _save(fig, path)


def latency_cdfs(results: Results, path: Path) -> Path | None:
    """Empirical CDF of every request's response time, per concurrency, repetitions pooled."""
    req = results.requests[results.requests["experiment"] == "concurrency"]
    if not len(req):
        return None
    levels = sorted(req["concurrency"].unique())
    cols = min(len(levels), 2)
    rows = int(np.ceil(len(levels) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(5.2 * cols, 3.8 * rows), squeeze=False)
    for ax, c in zip(axes.flat, levels, strict=False):
        for platform in results.platforms:
            t = np.sort(req.loc[(req["concurrency"] == c) & (req["platform"] == platform), "total_ms"].to_numpy())
            if len(t):
                ax.step(t, np.arange(1, len(t) + 1) / len(t), where="post", color=_color(platform, results),
                        label=f"{platform} (n={len(t)})")
        ref = paper.FIG1_FUNCTION_MS.get(int(c))
        if ref:
            ax.axvline(ref["mean_ms"], color="black", linestyle="--", linewidth=1, label="paper Kubeless mean")
        ax.set_xscale("log")
        _log_axis(ax.xaxis)
        ax.set_title(f"c = {c}")
        ax.set_xlabel("response time (ms, log scale)")
        ax.set_ylabel("fraction of requests")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8, loc="lower right")
    for ax in list(axes.flat)[len(levels):]:
        ax.axis("off")
    fig.suptitle("Latency distribution per concurrency (all repetitions, warm-up excluded)")
    return _save(fig, path)


def coldstart_bars(cold: pd.DataFrame, results: Results, path: Path) -> Path | None:
    """Mean start-to-first-200 per platform and kind with its t-interval; dots are the single repetitions."""
    if not len(cold):
        return None
    kinds = list(dict.fromkeys(cold["kind"]))
    platforms = [p for p in results.platforms if p in set(cold["platform"])]
    width = 0.8 / max(len(platforms), 1)
    fig, ax = plt.subplots(figsize=(max(5.5, 2.8 * len(kinds)), 4.5))
    raw = results.coldstart
    for i, platform in enumerate(platforms):
        for j, kind in enumerate(kinds):
            row = cold[(cold["platform"] == platform) & (cold["kind"] == kind)]
            if not len(row):
                continue
            r = row.iloc[0]
            x = j + (i - (len(platforms) - 1) / 2) * width
            err = [[r["start_to_first_200_ms"] - r["start_to_first_200_ms_ci_low"]],
                   [r["start_to_first_200_ms_ci_high"] - r["start_to_first_200_ms"]]]
            ax.bar(x, r["start_to_first_200_ms"], width * 0.9, color=_color(platform, results), alpha=0.75,
                   yerr=np.nan_to_num(err), capsize=5, label=_label(results, platform) if j == 0 else None)
            pts = raw.loc[(raw["platform"] == platform) & (raw["kind"] == kind), "start_to_first_200_ms"].dropna()
            ax.scatter(np.full(len(pts), x), pts, color="black", s=14, zorder=3)
            ax.annotate(f"{r['start_to_first_200_ms'] / 1000:.2f} s", (x, 0), textcoords="offset points",
                        xytext=(0, 6), ha="center", fontsize=9, color="white", fontweight="bold")
    ax.set_xticks(range(len(kinds)))
    ax.set_xticklabels(kinds)
    ax.set_ylabel("start to first HTTP 200 (ms)")
    ax.set_title("Cold start: mean, 95 % CI, single repetitions (dots)")
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)


def resources_over_time(per_run: pd.DataFrame, results: Results, path: Path) -> Path | None:
    """CPU and memory samples of each serving container over the whole benchmark; shading marks concurrency."""
    res = results.resources
    res = res[res["run_key"].isin(per_run.index)]
    if not len(res):
        return None
    starts = pd.to_datetime(per_run["started_utc"], utc=True, errors="coerce", format="ISO8601")
    t0 = starts.min()
    offset = (starts - t0).dt.total_seconds()
    if offset.isna().any():  # no usable start times: lay the runs end to end in report order
        lengths = res.groupby("run_key")["t_s"].max().reindex(per_run.index).fillna(0) + 1
        offset = lengths.cumsum() - lengths
    res = res.assign(x=res["t_s"] + res["run_key"].map(offset))
    fig, (ax_cpu, ax_mem) = plt.subplots(2, 1, figsize=(10, 6), sharex=True)
    levels = sorted(per_run["concurrency"].unique())
    cmap = plt.get_cmap("Greys")
    shades = {c: cmap(0.15 + 0.45 * i / max(len(levels) - 1, 1)) for i, c in enumerate(levels)}
    ends = res.groupby("run_key")["x"].max()
    for key, run in per_run.iterrows():
        if key in ends.index:
            for ax in (ax_cpu, ax_mem):
                ax.axvspan(offset[key], ends[key], color=shades[run["concurrency"]], alpha=0.35, linewidth=0)
    for platform in results.platforms:
        d = res[res["platform"] == platform]
        for i, (_key, g) in enumerate(d.groupby("run_key", sort=False)):
            label = _label(results, platform) if i == 0 else None
            ax_cpu.plot(g["x"], g["cpu_pct"], color=_color(platform, results), marker=".", markersize=5, linewidth=1,
                        label=label)
            ax_mem.plot(g["x"], g["mem_bytes"] / 2**20, color=_color(platform, results), marker=".", markersize=5,
                        linewidth=1, label=label)
    limit = res["mem_limit_bytes"].max()
    if pd.notna(limit) and limit > 0:
        ax_mem.axhline(limit / 2**20, color="black", linestyle="--", linewidth=1,
                       label=f"container memory limit ({limit / 2**30:.2f} GiB)")
    ax_mem.axhline(paper.MEMORY_CAP_BYTES / 2**20, color="grey", linestyle=":", linewidth=1,
                   label="paper's VM RAM (2 GB)")
    cores = results.manifest.get("host", {}).get("cores")
    if cores:
        ax_cpu.axhline(100 * cores, color="black", linestyle="--", linewidth=1, label=f"{cores} cores")
    ax_cpu.set_ylabel("CPU (% of one core)")
    ax_mem.set_ylabel("memory (MiB)")
    cpu_top = max(float(res["cpu_pct"].max()), 100.0 * (cores or 1))
    ax_cpu.set_ylim(0, cpu_top * 1.35)
    mem_top = max(float(res["mem_bytes"].max()), float(limit) if pd.notna(limit) else 0.0,
                  float(paper.MEMORY_CAP_BYTES)) / 2**20
    ax_mem.set_ylim(0, mem_top * 1.3)
    ax_mem.set_xlabel("time since the first measured run started (s)")
    ax_cpu.set_title("Resource use of the serving containers during the concurrency runs")
    patches = [Patch(color=shades[c], alpha=0.35, label=f"c={c}") for c in levels]
    for ax in (ax_cpu, ax_mem):
        ax.grid(True, alpha=0.3)
        handles, _labels = ax.get_legend_handles_labels()
        ax.legend(handles=handles + patches, fontsize=8, loc="upper left", ncols=4)
    return _save(fig, path)


def breakdown_bars(breakdown: pd.DataFrame, results: Results, path: Path) -> Path | None:
    """Stacked mean response time per platform, one panel per concurrency (own linear scale, so the parts keep
    their proportions): network/HTTP, runtime, model."""
    d = breakdown[breakdown["platform"].isin(results.platforms)]
    if not len(d) or d[[p for p, _, _ in PARTS]].isna().all().all():
        return None
    levels = sorted(d["concurrency"].unique())
    platforms = [p for p in results.platforms if p in set(d["platform"])]
    slant = len(platforms) > 2 or max(len(p) for p in platforms) > 10  # labels side by side would run together
    panel = max(2.6, 0.42 * len(platforms) + 0.8)
    fig, axes = plt.subplots(1, len(levels), figsize=(panel * len(levels) + 1.5, 4.5 + (0.8 if slant else 0)),
                             squeeze=False)
    for ax, c in zip(axes.flat, levels, strict=True):
        rows = d[d["concurrency"] == c].set_index("platform").reindex(platforms)
        x = np.arange(len(platforms))
        bottom = np.zeros(len(platforms))
        for col, label, color in PARTS:
            vals = np.nan_to_num(rows[col].to_numpy(dtype=float)).clip(min=0)
            ax.bar(x, vals, 0.7, bottom=bottom, color=color, label=label)
            bottom += vals
        for xi, total in zip(x, rows["client_ms"], strict=True):
            if pd.notna(total):
                ax.annotate(f"{total:.0f} ms", (xi, total), textcoords="offset points", xytext=(0, 3),
                            ha="center", fontsize=8)
        ax.set_xticks(x)
        if slant:
            ax.set_xticklabels(platforms, fontsize=8, rotation=35, ha="right", rotation_mode="anchor")
        else:
            ax.set_xticklabels(platforms, fontsize=9)
        ax.set_title(f"c = {c}")
        ax.margins(y=0.12)
        ax.grid(True, axis="y", alpha=0.3)
    axes.flat[0].set_ylabel("mean response time (ms)")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles[::-1], labels[::-1], fontsize=8, loc="upper right", ncols=3)
    fig.suptitle("Where the response time goes", x=0.02, ha="left")
    fig.tight_layout(rect=(0, 0, 1, 0.92))
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def open_loop_latency(rates: pd.DataFrame, vs_closed: pd.DataFrame, capacity: pd.DataFrame, results: Results,
                      path: Path) -> Path | None:
    """Issue 13: latency against offered load (open loop, from the scheduled send time: p50 solid, p99 dashed) beside
    the closed-loop ab cells at the throughput they reached (squares, c=...), one panel per platform, log scale; the
    SLO as a line, the capacity at the objective with its interval shaded. Runs whose generator fell behind are not
    drawn, nor percentiles with too few samples."""
    usable = rates[rates["usable"] == 1] if len(rates) else rates
    platforms = [p for p in results.platforms if p in set(usable["platform"])]
    if not platforms:
        return None
    cols = min(len(platforms), 3)  # more platforms wrap into rows, so the panels keep a readable size
    rows = -(-len(platforms) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(6.2 * cols, 4.8 * rows), squeeze=False)
    for ax in list(axes.flat)[len(platforms):]:
        ax.axis("off")
    slo = float(capacity["slo_p99_ms"].iloc[0]) if len(capacity) else None
    for ax, platform in zip(axes.flat, platforms, strict=False):
        color = _color(platform, results)
        d = usable[usable["platform"] == platform].sort_values("offered_rps")
        ax.plot(d["offered_rps"], d["p50_ms"], marker="o", color=color, label="open loop p50")
        p99 = d[d["p99_ms"].notna()]
        if len(p99):
            ax.plot(p99["offered_rps"], p99["p99_ms"], marker="^", linestyle="--", color=color,
                    label="open loop p99 (runs with >= 662 served)")
        c = vs_closed[vs_closed["platform"] == platform]
        ax.plot(c["served_rps"], c["closed_p50_ms"], marker="s", linestyle=":", color="black",
                label="closed loop (ab) p50")
        c99 = c[c["closed_p99_ms"].notna()]
        if len(c99):
            ax.plot(c99["served_rps"], c99["closed_p99_ms"], marker="s", linestyle="none", markerfacecolor="none",
                    color="black", label="closed loop (ab) p99")
        for _, cell in c.iterrows():
            if np.isfinite(cell["closed_p50_ms"]):
                ax.annotate(f"c={cell['concurrency']}", (cell["served_rps"], cell["closed_p50_ms"]),
                            textcoords="offset points", xytext=(4, -10), fontsize=7)
        if slo:
            ax.axhline(slo, color="grey", linestyle="-.", linewidth=1, label=f"objective: p99 <= {slo:g} ms")
        row = capacity[capacity["platform"] == platform]
        if len(row) and np.isfinite(row["capacity_rps"].iloc[0]):
            r = row.iloc[0]
            ax.axvline(r["capacity_rps"], color=color, linewidth=1.5,
                       label=f"capacity at the objective: {r['capacity_rps']:.1f} req/s")
            low = r["capacity_ci_low_rps"] if np.isfinite(r["capacity_ci_low_rps"]) else 0
            high = r["capacity_ci_high_rps"] if np.isfinite(r["capacity_ci_high_rps"]) else r["highest_rate_rps"]
            ax.axvspan(low, high, color=color, alpha=0.08, label="its interval (rates tried)")
        ax.set_yscale("log")
        _log_axis(ax.yaxis)
        ax.set_xlabel("offered load (open loop) / throughput reached (closed loop), req/s")
        ax.set_ylabel("latency (ms, log scale)")
        ax.set_title(_label(results, platform))
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7, loc="upper left")
    fig.suptitle("Latency against offered load: open loop (from the scheduled send time) vs closed loop (ab)")
    return _save(fig, path)


def autoscale_over_time(samples: pd.DataFrame, results: Results, path: Path) -> Path | None:
    """Replicas (ready, and what the HPA wants) and the HPA's CPU utilisation over an autoscaling run, per platform;
    the shaded span is the load (autoscale_duration_s)."""
    if not len(samples):
        return None
    fig, (ax_rep, ax_cpu) = plt.subplots(2, 1, figsize=(10, 6), sharex=True)
    duration = results.config.get("autoscale_duration_s")
    for ax in (ax_rep, ax_cpu):
        if duration:
            ax.axvspan(0, float(duration), color="#dddddd", alpha=0.6, linewidth=0)
        ax.grid(True, alpha=0.3)
    for platform in results.platforms:
        d = samples[samples["platform"] == platform].sort_values("t_s")
        if not len(d):
            continue
        label = _label(results, platform)
        ax_rep.step(d["t_s"], d["ready_replicas"], where="post", color=_color(platform, results), linewidth=1.5,
                    label=f"{label}: ready")
        ax_rep.step(d["t_s"], d["hpa_desired_replicas"], where="post", color=_color(platform, results), linewidth=1,
                    linestyle="--", label=f"{label}: HPA desired")
        ax_cpu.plot(d["t_s"], d["hpa_cpu_pct"], color=_color(platform, results), marker=".", markersize=5, linewidth=1,
                    label=label)
    top = pd.concat([samples["ready_replicas"], samples["hpa_desired_replicas"]]).max()
    ax_rep.set_ylim(0, (float(top) if pd.notna(top) else 1.0) + 1)
    ax_rep.yaxis.get_major_locator().set_params(integer=True)
    ax_rep.set_ylabel("replicas")
    ax_cpu.set_ylabel("HPA CPU (% of request)")
    ax_cpu.set_xlabel("time since the load started (s); shaded: the load")
    ax_rep.set_title("Autoscaling under ab load: replicas and CPU the HPA saw")
    for ax in (ax_rep, ax_cpu):
        ax.legend(fontsize=8, loc="upper right")
    return _save(fig, path)


def cross_platform_ratios(cross: pd.DataFrame, results: Results, path: Path) -> Path | None:
    """Each function platform's mean response time over the baseline's, per concurrency, with its interval. The
    platforms' points are spread a little around each concurrency so that their intervals do not hide each other;
    the legend sits under the plot, where it covers no line however many platforms there are."""
    if not len(cross):
        return None
    platforms = [p for p in results.function_platforms if p in set(cross["platform"])]
    fig, ax = plt.subplots(figsize=(8, 4.2 + 0.25 * ((len(platforms) + 2) // 3)))
    for i, platform in enumerate(platforms):
        d = cross[cross["platform"] == platform]
        err = np.vstack([d["mean_ratio"] - d["mean_ratio_ci_low"], d["mean_ratio_ci_high"] - d["mean_ratio"]])
        spread = 1 + 0.035 * (i - (len(platforms) - 1) / 2)  # a factor: the x axis is logarithmic
        ax.errorbar(d["concurrency"] * spread, d["mean_ratio"], yerr=np.nan_to_num(err), marker="o", capsize=3,
                    color=_color(platform, results), label=_label(results, platform))
    ax.axhline(1.0, color=BASELINE_COLOR, linestyle="--", linewidth=1, label=f"{results.baseline} (= 1)")
    ax.set_xscale("log")
    levels = sorted(set(cross["concurrency"]))
    ax.set_xticks(levels)
    ax.set_xticklabels([str(c) for c in levels])
    ax.xaxis.set_minor_formatter(FuncFormatter(lambda _v, _p: ""))
    ax.set_xlabel("concurrency (ab -c)")
    ax.set_ylabel("mean response time / baseline's")
    ax.set_ylim(bottom=0)
    ax.set_title("Every function platform against the baseline, measured in the same run")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncols=min(3, len(platforms) + 1),
              frameon=False)
    return _save(fig, path)
