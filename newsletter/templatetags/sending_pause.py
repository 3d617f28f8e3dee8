"""The brake's red banner, on every admin page and on the operator page (one query where used)."""

from django import template

from newsletter.selectors import sending_pause_active

register = template.Library()


@register.inclusion_tag("staff/_sending_paused.html")
def sending_pause_banner() -> dict:
    return {"pause": sending_pause_active()}
