"""Operator pages outside the admin."""

from __future__ import annotations

from dataclasses import fields

from django.contrib.admin.views.decorators import staff_member_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone

from newsletter.services.deliverability.sendrate import send_rate_status
from newsletter.services.deliverability.warmup import warmup_status
from newsletter.stats_charts import chart_deliveries, chart_papers, chart_rates, chart_subscribers
from newsletter.stats_selectors import RATE_LIMIT_LINE, DayStats, stats_per_day, stats_subscribers
from papers.selectors import stats_feeds

CHART_DAYS = 30


@staff_member_required
def stats(request: HttpRequest) -> HttpResponse:
    days = stats_per_day(days=CHART_DAYS, today=timezone.now().date())
    totals = DayStats(
        day=days[-1].day,
        **{
            name: sum(getattr(d, name) for d in days)
            for name in (f.name for f in fields(DayStats) if f.name != "day")
        },
    )
    context = {
        "subscribers": stats_subscribers(),
        "days": days,
        "active_days": [d for d in reversed(days) if any(d.__dict__[k] for k in d.__dict__ if k != "day")],
        "totals": totals,
        "rate_limit": RATE_LIMIT_LINE,
        "send_rate": send_rate_status(),
        "warmup": warmup_status(),
        "feeds": stats_feeds(),
        "charts": [
            ("deliveries", chart_deliveries(days), "Digests sent and failed per day"),
            ("subscribers", chart_subscribers(days), "New confirmed subscribers and unsubscribes per day"),
            ("rates", chart_rates(days), "Bounce and complaint rates per day against the 0.3% line"),
            ("papers", chart_papers(days), "Papers ingested per day"),
        ],
    }
    return render(request, "staff/stats.html", context)
