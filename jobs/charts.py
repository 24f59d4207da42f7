"""Charts where a person would rather look than read numbers, drawn as PNG with matplotlib (Agg).

Each chart is built in two steps: a ``*_figure`` function that draws the data it is given onto
a new ``Figure`` (no pyplot, so no global state and safe on any thread), and ``png`` that
renders and closes it. Callers on the event loop use ``render`` (both steps on a worker
thread). Tests read what a figure shows from its artists before it is rendered. matplotlib is
imported when a chart is first drawn, not at start: it is a second of every daemon start.
"""

from __future__ import annotations

import asyncio
import io
from collections.abc import Callable, Sequence
from datetime import date
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from matplotlib.figure import Figure

DPI = 110


def png(figure: Figure) -> bytes:
    """The figure as PNG bytes (Agg, no display needed)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(figure)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI, bbox_inches="tight")
    figure.clear()
    return buffer.getvalue()


async def render(build: Callable[..., Figure], *args: Any, **kwargs: Any) -> bytes:
    """Draw and render off the event loop."""
    return await asyncio.to_thread(lambda: png(build(*args, **kwargs)))


# -- training -----------------------------------------------------------------------------------
def loss_figure(
    title: str, train_losses: Sequence[float], evaluation: dict[str, Any] | None
) -> Figure:
    """Training loss per step; held-out loss before (the base model: a fresh adapter changes
    nothing) and after training; and the evaluation as a table under the curve."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(7, 5.2))
    grid = figure.add_gridspec(2, 1, height_ratios=(3, 1.3))
    ax = figure.add_subplot(grid[0])
    steps = list(range(1, len(train_losses) + 1))
    ax.plot(steps, list(train_losses), color="tab:blue", linewidth=1.4, label="training loss")
    e = evaluation or {}
    if "base_loss" in e and "adapter_loss" in e:
        ax.plot(
            [0, max(len(train_losses), 1)],
            [e["base_loss"], e["adapter_loss"]],
            color="tab:orange",
            marker="o",
            linestyle="--",
            label="held-out loss",
        )
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper right")
    table_ax = figure.add_subplot(grid[1])
    table_ax.axis("off")
    rows = evaluation_rows(e)
    if rows:
        table = table_ax.table(cellText=rows, colLabels=["", "value"], loc="center", cellLoc="left")
        table.scale(1, 1.3)
    return figure


def evaluation_rows(e: dict[str, Any]) -> list[list[str]]:
    if not e:
        return []
    rows = []
    if "base_loss" in e:
        rows.append(["held-out loss, base model", f"{e['base_loss']:.4f}"])
    if "adapter_loss" in e:
        rows.append(["held-out loss, adapter", f"{e['adapter_loss']:.4f}"])
    if "improvement" in e:
        margin = f" (needs {e['margin']:+.0%})" if "margin" in e else ""
        rows.append(["improvement", f"{e['improvement']:+.1%}{margin}"])
    if "adapter_wins" in e:
        rows.append(
            [
                "probes won / lost / tied",
                f"{e['adapter_wins']} / {e.get('base_wins', 0)} / {e.get('ties', 0)}",
            ]
        )
    if "proposed" in e:
        rows.append(["proposed for promotion", "yes" if e["proposed"] else "no"])
    return rows


# -- activity -----------------------------------------------------------------------------------
def activity_figure(title: str, hours: Sequence[str], messages: Sequence[int]) -> Figure:
    """Messages per hour of the period (``hours`` are the bars' labels, e.g. "14:00")."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(8, 3.2))
    ax = figure.add_subplot()
    positions = list(range(len(messages)))
    ax.bar(positions, list(messages), color="tab:green")
    step = max(1, len(hours) // 12)
    ax.set_xticks(positions[::step], list(hours)[::step], rotation=45, ha="right")
    ax.set_ylabel("messages")
    ax.set_title(title)
    ax.grid(axis="y", alpha=0.3)
    return figure


# -- usage --------------------------------------------------------------------------------------
def usage_figure(title: str, days: Sequence[date], tokens: Sequence[int]) -> Figure:
    """Tokens (as counted against the budget) per day."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(7, 3.2))
    ax = figure.add_subplot()
    positions = list(range(len(tokens)))
    ax.bar(positions, list(tokens), color="tab:purple")
    ax.set_xticks(positions, [f"{d:%a %d}" for d in days])
    ax.set_ylabel("tokens")
    ax.set_title(title)
    ax.grid(axis="y", alpha=0.3)
    return figure
