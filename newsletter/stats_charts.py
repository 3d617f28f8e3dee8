"""Charts of the operator page (/staff/stats/): matplotlib drawn on the server, embedded as SVG images.

Each chart is a `data:` URI for an <img>: the page's Content-Security-Policy allows data: images, while
matplotlib's SVG carries inline styles the policy would refuse inside the page itself.
"""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Sequence

import matplotlib as mpl
from matplotlib import dates as mdates
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator, PercentFormatter

from newsletter.stats_selectors import RATE_LIMIT_LINE, DayStats

BLUE, RED, GREEN, GREY, ORANGE = "#0b57d0", "#b42318", "#1a7f37", "#8c959f", "#bc4c00"


class _PercentTicks(PercentFormatter):
    """Percent labels with the decimals the tick step needs: 0.2% steps get one, 1% steps none. (A
    fixed one decimal printed 0.15% steps as 0.0%, 0.1%, 0.3%, 0.5%: evenly spaced, unevenly named.)"""

    def set_locs(self, locs) -> None:
        super().set_locs(locs)
        if len(locs) > 1:
            step = (locs[1] - locs[0]) * 100 / self.xmax
            self.decimals = max(0, -math.floor(math.log10(step) + 1e-9))


def _axes(title: str, ylabel: str, days: Sequence[DayStats]):
    figure = Figure(figsize=(7.2, 2.4), layout="constrained")
    axes = figure.subplots()
    axes.set_title(title, loc="left", fontsize=11)
    axes.set_ylabel(ylabel)
    # The whole period, whatever the data: a chart with one point would otherwise zoom onto it.
    axes.set_xlim(mdates.date2num(days[0].day) - 0.5, mdates.date2num(days[-1].day) + 0.5)
    axes.xaxis.set_major_locator(mdates.AutoDateLocator(minticks=4, maxticks=8))
    axes.xaxis.set_major_formatter(mdates.DateFormatter("%b %d"))
    axes.yaxis.set_major_locator(MaxNLocator(integer=True))
    axes.grid(axis="y", alpha=0.3)
    axes.spines[["top", "right"]].set_visible(False)
    return figure, axes


def _data_uri(figure: Figure) -> str:
    buffer = io.BytesIO()
    # Text stays text (smaller, selectable); the salt keeps element ids, and so the page, reproducible.
    with mpl.rc_context({"svg.fonttype": "none", "svg.hashsalt": "paper-digest-stats"}):
        figure.savefig(buffer, format="svg")
    return "data:image/svg+xml;base64," + base64.b64encode(buffer.getvalue()).decode()


def chart_deliveries(days: Sequence[DayStats]) -> str:
    figure, axes = _axes("Digests per day", "emails", days)
    x = [d.day for d in days]
    axes.bar(x, [d.sent for d in days], color=BLUE, label="sent")
    axes.bar(x, [d.failed for d in days], bottom=[d.sent for d in days], color=RED, label="failed")
    axes.legend(loc="upper left", frameon=False, ncols=2)
    return _data_uri(figure)


def chart_subscribers(days: Sequence[DayStats]) -> str:
    figure, axes = _axes("Subscribers per day", "subscribers", days)
    x = [d.day for d in days]
    axes.bar(x, [d.confirmed for d in days], color=GREEN, label="new, confirmed")
    axes.bar(x, [-d.unsubscribed for d in days], color=GREY, label="unsubscribed")
    axes.axhline(0, color="#57606a", linewidth=0.8)
    axes.yaxis.set_major_formatter(lambda value, _: f"{abs(value):g}")
    axes.legend(loc="upper left", frameon=False, ncols=2)
    return _data_uri(figure)


def chart_rates(days: Sequence[DayStats]) -> str:
    figure, axes = _axes("Bounce and complaint rates (of digests sent that day)", "rate", days)
    x = [d.day for d in days]
    for label, rates, color in (
        ("bounces", [d.bounce_rate for d in days], ORANGE),
        ("complaints", [d.complaint_rate for d in days], RED),
    ):
        values = [math.nan if r is None else r for r in rates]  # no digest sent: a gap, not 0%
        axes.plot(x, values, marker="o", markersize=3, color=color, label=label)
    axes.axhline(RATE_LIMIT_LINE, color=RED, linestyle="--", linewidth=1, label="Gmail's 0.3% limit")
    # Steps of 1, 2 or 5 times a power of ten, in percent too (0.2%, 0.5%, 1%): never 0.15% or 0.25%.
    axes.yaxis.set_major_locator(MaxNLocator(nbins=5, steps=[1, 2, 5, 10]))
    axes.yaxis.set_major_formatter(_PercentTicks(xmax=1))
    highest = max((r for d in days for r in (d.bounce_rate, d.complaint_rate) if r is not None), default=0)
    axes.set_ylim(0, max(highest, RATE_LIMIT_LINE * 2) * 1.1)  # the 0.3% line always in view
    axes.legend(loc="upper left", frameon=False, ncols=3)
    return _data_uri(figure)


def chart_papers(days: Sequence[DayStats]) -> str:
    figure, axes = _axes("Papers ingested per day", "papers", days)
    axes.bar([d.day for d in days], [d.papers for d in days], color=BLUE)
    return _data_uri(figure)
