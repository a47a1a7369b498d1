"""PNG plots of a run's tables and a Markdown `summary.md` linking them.

Every plotting function writes one PNG at `path` (9 x 4 in or so, 110 dpi)
and returns `path`. Settings are drawn in a fixed order with fixed colours:
federated (blue), local-only (orange), centralized (green).

Plots:
  learning_curves   training loss and a metric per round, with reference lines.
  per_client        a metric per client and setting (the pooled row last).
  privacy_curve     ε spent per round.
  client_partition  ratings per client and each client's genre mix.
  ablation          a metric per feature-ablation variant and setting.
"""

import math
import os
from typing import List, Mapping, Sequence

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
import matplotlib.ticker

SUMMARY_FILE = "summary.md"
LEARNING_CURVES = "learning_curves.png"
PER_CLIENT = "per_client.png"
PRIVACY = "privacy.png"
CLIENT_PARTITION = "client_partition.png"
ABLATION = "ablation.png"

SETTING_LABELS = {"federated": "federated", "local_only": "local-only",
                  "centralized": "centralized"}
SETTING_COLOURS = {"federated": "tab:blue", "local_only": "tab:orange",
                   "centralized": "tab:green"}
POOLED = "all"
FULL_MODEL = "all features"
EPSILON = "privacy/epsilon"
DELTA = "privacy/delta"
# Units of the rating metrics (ratings are in stars); other metrics: none.
UNITS = {"mae": "stars", "rmse": "stars", "mse": "stars²", "mape": "%"}
COMPARISON_COLOURS = ("tab:gray", "tab:purple", "tab:brown", "tab:pink",
                      "tab:olive", "tab:cyan")


def new_figure(width: float, height: float) -> Figure:
  """A figure drawn by the Agg backend (no pyplot), constrained layout, 110 dpi."""
  figure = Figure(figsize=(width, height), dpi=110, layout="constrained")
  FigureCanvasAgg(figure)
  return figure


def _metric_label(metric: str) -> str:
  """E.g. "MAE (stars)" for "mae", "R2" for "r2"."""
  unit = UNITS.get(metric)
  return f"{metric.upper()} ({unit})" if unit else metric.upper()


def _round_axis(axes) -> None:
  axes.set_xlabel("round")
  axes.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))


def _nothing_recorded(axes, what: str) -> None:
  axes.text(0.5, 0.5, f"no {what} recorded", ha="center", va="center",
            transform=axes.transAxes, color="gray")
  axes.tick_params(left=False, bottom=False, labelleft=False,
                   labelbottom=False)


def _series(metrics: pd.DataFrame, column: str) -> pd.Series:
  """`column` indexed by round_num, rounds without a value dropped."""
  if column not in metrics:
    return pd.Series(dtype=float)
  return metrics.set_index("round_num")[column].dropna()


def _lower_limit(values: np.ndarray) -> float:
  """An axis start 10% of |min| below the smallest finite value (0.9 * min)."""
  smallest = np.nanmin(values)
  return smallest - 0.1 * abs(smallest)


def _settings(table: pd.DataFrame) -> List[str]:
  """The settings of `table` in the fixed order; ValueError on unknown ones."""
  present = set(table["setting"])
  unknown = present - set(SETTING_LABELS)
  if unknown:
    raise ValueError(f"unknown settings {sorted(unknown)}; expected some of "
                     f"{list(SETTING_LABELS)}.")
  return [s for s in SETTING_LABELS if s in present]


def _legend_outside(axes, **kwargs) -> None:
  axes.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0,
              **kwargs)


def _reference_lines(axes, references: Mapping[str, float]) -> None:
  """Each {name: value} as a dashed horizontal line labelled "name: value"."""
  for i, (name, value) in enumerate(references.items()):
    axes.axhline(value, linestyle="--", label=f"{name}: {value:.4f}",
                 color=COMPARISON_COLOURS[i % len(COMPARISON_COLOURS)])


def learning_curves(metrics: pd.DataFrame, path: str, metric: str,
                    comparisons: Mapping[str, float] = {}) -> str:
  """Plots training loss and `metric` per round.

  Args:
    metrics: a run's metrics.csv: `round_num` (1..N) and any of `train/loss`,
      `train/<metric>`, `eval/<metric>` (NaN on rounds without a value);
      other columns are ignored.
    path: the PNG to write.
    metric: e.g. "mae".
    comparisons: {name: value} drawn as dashed horizontal lines, e.g.
      {"local-only": 0.7173, "centralized": 0.6849}.

  Returns:
    `path`.
  """
  figure = new_figure(9, 4)
  loss_axes, metric_axes = figure.subplots(1, 2)
  loss = _series(metrics, "train/loss")
  if loss.empty:
    _nothing_recorded(loss_axes, "training loss")
  else:
    loss_axes.plot(loss.index, loss.to_numpy(), color="tab:blue")
  loss_axes.set_title("Training loss")
  loss_axes.set_ylabel("loss (mean per example)")
  _round_axis(loss_axes)

  train = _series(metrics, f"train/{metric}")
  evaluation = _series(metrics, f"eval/{metric}")
  if not train.empty:
    metric_axes.plot(train.index, train.to_numpy(), color="tab:blue",
                     label="train")
  if not evaluation.empty:
    metric_axes.plot(evaluation.index, evaluation.to_numpy(), color="tab:red",
                     marker="o", markersize=4, label="eval")
  _reference_lines(metric_axes, comparisons)
  if metric_axes.lines:
    metric_axes.legend(fontsize="small")
  else:
    _nothing_recorded(metric_axes, metric.upper())
  metric_axes.set_title(f"{metric.upper()} per round")
  metric_axes.set_ylabel(_metric_label(metric))
  _round_axis(metric_axes)
  for axes in (loss_axes, metric_axes):
    axes.grid(True, alpha=0.3)
  figure.savefig(path)
  return path


def per_client(table: pd.DataFrame, path: str, metric: str = "mae") -> str:
  """Grouped bars of `metric`: one group per client, one bar per setting.

  Args:
    table: columns `setting` (some of "federated", "local_only",
      "centralized"), `client` (ids, and "all" for the pooled row) and
      `metric`. Clients are drawn in the table's order, "all" last (hatched,
      after a gap).
    path: the PNG to write.
    metric: the column to plot, e.g. "mae".

  Returns:
    `path`.
  """
  settings = _settings(table)
  values = table.assign(client=table["client"].astype(str)).pivot(
      index="client", columns="setting", values=metric)
  clients = [c for c in pd.unique(table["client"].astype(str)) if c != POOLED]
  clients += [POOLED] if POOLED in values.index else []
  values = values.loc[clients, settings]
  positions = np.arange(len(clients), dtype=float)
  if clients[-1] == POOLED:
    positions[-1] += 0.5
  width = 0.8 / len(settings)

  figure = new_figure(9, 4)
  axes = figure.add_subplot()
  for i, setting in enumerate(settings):
    bars = axes.bar(positions + (i - (len(settings) - 1) / 2) * width,
                    values[setting].to_numpy(), width,
                    color=SETTING_COLOURS[setting],
                    label=SETTING_LABELS[setting])
    if clients[-1] == POOLED:
      bars[-1].set_hatch("//")
      bars[-1].set_edgecolor("white")
  axes.set_xticks(positions, [c if c != POOLED else "all\n(pooled)"
                              for c in clients])
  lower = _lower_limit(values.to_numpy())
  largest = np.nanmax(values.to_numpy())
  axes.set_ylim(lower, largest + 0.05 * (largest - lower))
  axes.set_title(f"{metric.upper()} per client")
  axes.set_xlabel("client")
  axes.set_ylabel(_metric_label(metric))
  axes.grid(True, axis="y", alpha=0.3)
  _legend_outside(axes, fontsize="small")
  figure.savefig(path)
  return path


def privacy_curve(metrics: pd.DataFrame, path: str) -> str:
  """Plots the ε spent after each round.

  Args:
    metrics: a run's metrics.csv: `round_num`, `privacy/epsilon` and
      `privacy/delta` (constant; shown in the title if present).
    path: the PNG to write.

  Returns:
    `path`.

  Raises:
    ValueError: `metrics` has no `privacy/epsilon` column.
  """
  if EPSILON not in metrics:
    raise ValueError(f"metrics have no {EPSILON!r} column (not a DP run?); "
                     f"columns: {list(metrics.columns)}.")
  epsilon = _series(metrics, EPSILON)
  deltas = ", ".join(f"{d:g}" for d in pd.unique(_series(metrics, DELTA)))
  figure = new_figure(6.4, 4)
  axes = figure.add_subplot()
  if epsilon.empty:
    _nothing_recorded(axes, "ε")
  else:
    axes.plot(epsilon.index, epsilon.to_numpy(), color="tab:purple",
              marker="o" if len(epsilon) <= 30 else None, markersize=4,
              label=(f"after round {epsilon.index[-1]}: "
                     f"ε = {epsilon.iloc[-1]:.3f}"))
    axes.legend(loc="upper left", fontsize="small")
  axes.set_title(f"Privacy spent (δ = {deltas})" if deltas
                 else "Privacy spent")
  axes.set_ylabel("ε (cumulative)")
  _round_axis(axes)
  axes.grid(True, alpha=0.3)
  figure.savefig(path)
  return path


def privacy_utility(epsilons: Sequence[float], values: Sequence[float], path: str,
                    metric: str, delta: float,
                    references: Mapping[str, float] = {}) -> str:
  """Plots a quality metric against ε (log axis), one point per DP run.

  Args:
    epsilons, values: ε of each run and its metric value.
    path: the PNG to write.
    metric: the metric's name, e.g. "ndcg@10".
    delta: the runs' δ, shown in the title.
    references: {name: value} drawn as dashed horizontal lines (e.g. the
      non-private model).

  Returns:
    `path`.
  """
  figure = new_figure(6.4, 4)
  axes = figure.add_subplot()
  axes.plot(epsilons, values, marker="o", color="tab:blue", label="with user-level DP")
  for epsilon, value in zip(epsilons, values):
    axes.annotate(f"{value:.3f}", (epsilon, value), textcoords="offset points",
                  xytext=(0, 6), ha="center", fontsize="small")
  _reference_lines(axes, references)
  axes.set_xscale("log")
  axes.set_xticks(list(epsilons))
  axes.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda x, _: f"{x:g}"))
  axes.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
  axes.set_xlabel("ε")
  axes.set_ylabel(_metric_label(metric))
  axes.set_title(f"{_metric_label(metric)} against ε (δ = {delta:g})")
  axes.grid(True, alpha=0.3)
  axes.legend(loc="lower right", fontsize="small")
  figure.savefig(path)
  return path


def client_partition(examples_per_client: pd.Series,
                     genre_share: pd.DataFrame, path: str) -> str:
  """Plots the ratings per client and each client's genre mix.

  Args:
    examples_per_client: number of ratings, indexed by client id (string).
    genre_share: indexed by the same client ids, one column per genre (up to
      18 distinct colours are safe), each row summing to 1.
    path: the PNG to write.

  Returns:
    `path`.
  """
  clients = [str(c) for c in examples_per_client.index]
  shares = genre_share.loc[examples_per_client.index]
  figure = new_figure(11, 4.6)
  count_axes, mix_axes = figure.subplots(1, 2, width_ratios=(1, 1.3))
  count_axes.bar(clients, examples_per_client.to_numpy(), color="tab:blue")
  count_axes.set_title(f"Ratings per client ({len(clients)} clients)")
  count_axes.set_xlabel("client")
  if len(clients) > 10:  # many (or long) client ids side by side would overlap
    count_axes.tick_params(axis="x", labelrotation=90, labelsize="small")
  count_axes.set_ylabel("number of ratings")
  count_axes.yaxis.set_major_formatter(
      matplotlib.ticker.FuncFormatter(lambda y, _: f"{y:,.0f}"))
  count_axes.grid(True, axis="y", alpha=0.3)

  colours = matplotlib.colormaps["tab20"]
  left = np.zeros(len(clients))
  for i, genre in enumerate(shares.columns):
    share = shares[genre].to_numpy(dtype=float)
    mix_axes.barh(clients, share, left=left, label=str(genre),
                  color=colours(i % colours.N))
    left += share
  mix_axes.set_xlim(0, 1)
  mix_axes.xaxis.set_major_formatter(matplotlib.ticker.PercentFormatter(1.0))
  mix_axes.invert_yaxis()  # first client at the top
  mix_axes.set_title("Genre mix per client")
  mix_axes.set_xlabel("share of the client's ratings")
  mix_axes.set_ylabel("client")
  _legend_outside(mix_axes, fontsize="x-small", title="genre",
                  title_fontsize="small")
  figure.savefig(path)
  return path


def ablation(table: pd.DataFrame, path: str, metric: str = "mae") -> str:
  """Horizontal grouped bars of `metric` per ablation variant and setting.

  Args:
    table: columns `variant` (e.g. "all features", "no genres"), `setting`
      ("federated" and/or "centralized") and `metric`. Variants are drawn top
      to bottom in the table's order; a dotted line marks each setting's
      "all features" value.
    path: the PNG to write.
    metric: the column to plot, e.g. "mae".

  Returns:
    `path`.
  """
  settings = _settings(table)
  variants = list(pd.unique(table["variant"]))
  values = table.pivot(index="variant", columns="setting",
                       values=metric).loc[variants, settings]
  height = 0.8 / len(settings)
  figure = new_figure(9, max(3.0, 1.4 + 0.2 * len(variants) * len(settings)))
  axes = figure.add_subplot()
  for i, setting in enumerate(settings):
    column = values[setting].to_numpy(dtype=float)
    bars = axes.barh(np.arange(len(variants)) + i * height - (0.8 - height) / 2,
                     column, height, color=SETTING_COLOURS[setting],
                     label=SETTING_LABELS[setting])
    axes.bar_label(bars, padding=3, fontsize="small", labels=[
        "" if math.isnan(v) else f"{v:.4f}" for v in column])
    full = values[setting].get(FULL_MODEL, math.nan)
    if not math.isnan(full):
      axes.axvline(full, linestyle=":", color=SETTING_COLOURS[setting])
  lower = _lower_limit(values.to_numpy())
  largest = np.nanmax(values.to_numpy())
  axes.set_xlim(lower, largest + 0.15 * (largest - lower))  # room for labels
  axes.set_yticks(np.arange(len(variants)), variants)
  axes.invert_yaxis()  # the table's first variant at the top
  axes.set_title(f"Feature ablation: {metric.upper()} per variant")
  axes.set_xlabel(_metric_label(metric))
  axes.grid(True, axis="x", alpha=0.3)
  _legend_outside(axes, fontsize="small")
  figure.savefig(path)
  return path


def _cell(value) -> str:
  if isinstance(value, (float, np.floating)):
    return "" if math.isnan(value) else f"{value:.4f}"
  if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
    return f"{value:,}"
  return str(value).replace("|", "\\|")


def markdown_table(table: pd.DataFrame) -> List[str]:
  """`table`'s columns (not its index) as Markdown lines; floats 4 decimals."""
  lines = ["| " + " | ".join(_cell(c) for c in table.columns) + " |",
           "|" + "|".join(" --- " for _ in table.columns) + "|"]
  for row in table.itertuples(index=False):
    lines.append("| " + " | ".join(_cell(v) for v in row) + " |")
  return lines


def write_summary(output_dir: str, title: str, lines: Sequence[str],
                  images: Mapping[str, str],
                  tables: Mapping[str, pd.DataFrame] = {}) -> str:
  """Writes `output_dir/summary.md`: bullets, tables, then images.

  Args:
    output_dir: where summary.md goes (created if needed).
    title: the `#` heading.
    lines: the bullet points, in order.
    images: {caption: PNG path (absolute, or relative to the working
      directory)}; linked relative to `output_dir`, missing files skipped.
    tables: {heading: table}, written as Markdown tables (columns only, not
      the index; floats with 4 decimals, blank if NaN).

  Returns:
    The path of summary.md.
  """
  os.makedirs(output_dir, exist_ok=True)
  text = [f"# {title}", ""] + [f"- {line}" for line in lines] + [""]
  for name, table in tables.items():
    text += [f"## {name}", "", *markdown_table(table), ""]
  for caption, image in images.items():
    if os.path.isfile(image):
      relative = os.path.relpath(image, output_dir).replace(os.sep, "/")
      text += [f"## {caption}", "", f"![{caption}]({relative})", ""]
  path = os.path.join(output_dir, SUMMARY_FILE)
  with open(path, "w", encoding="utf-8") as f:
    f.write("\n".join(text))
  return path
