"""Operator pages outside the admin."""

from __future__ import annotations

from django.contrib.admin.views.decorators import staff_member_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone

from newsletter.selectors import stats_deliveries_per_day, stats_subscribers

CHART_DAYS = 30
CHART_HEIGHT = 160
BAR_WIDTH = 16


@staff_member_required
def stats(request: HttpRequest) -> HttpResponse:
    days = stats_deliveries_per_day(days=CHART_DAYS, today=timezone.now().date())
    peak = max([d.sent + d.failed for d in days] + [1])
    bars = []
    for index, day in enumerate(days):
        x = index * (BAR_WIDTH + 4)
        sent_h = round(CHART_HEIGHT * day.sent / peak)
        failed_h = round(CHART_HEIGHT * day.failed / peak)
        bars.append(
            {
                "day": day,
                "x": x,
                "sent_y": CHART_HEIGHT - sent_h,
                "sent_h": sent_h,
                "failed_y": CHART_HEIGHT - sent_h - failed_h,
                "failed_h": failed_h,
            }
        )
    context = {
        "subscribers": stats_subscribers(),
        "days": days,
        "bars": bars,
        "peak": peak,
        "chart_width": CHART_DAYS * (BAR_WIDTH + 4),
        "chart_height": CHART_HEIGHT,
        "bar_width": BAR_WIDTH,
        "totals": {
            "sent": sum(d.sent for d in days),
            "failed": sum(d.failed for d in days),
            "bounced": sum(d.bounced for d in days),
        },
    }
    return render(request, "staff/stats.html", context)
