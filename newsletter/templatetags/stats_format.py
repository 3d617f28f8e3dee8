from django import template

register = template.Library()


@register.filter
def percent(rate: float) -> str:
    """0.0042 -> "0.42%"."""
    return f"{rate:.2%}"
