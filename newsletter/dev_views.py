"""The local outbox (DEBUG only): read every email the service sent, without an SMTP server."""

from __future__ import annotations

import re

from csp.decorators import csp_replace
from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.clickjacking import xframe_options_sameorigin

from newsletter.outbox import outbox_messages, outbox_read


def _require_debug() -> None:
    if not settings.DEBUG:
        raise Http404("The outbox exists only in DEBUG mode.")


def _parts(message) -> tuple[str, str | None]:
    text = message.get_body(preferencelist=("plain",))
    html = message.get_body(preferencelist=("html",))
    return (text.get_content() if text else ""), (html.get_content() if html else None)


MAX_INDENT = 8  # .mail-text .indent-N in site.css


def text_lines(text: str) -> list[tuple[int, str]]:
    """Each line of a text/plain part with its indent, so a wrapped line can keep it (a hanging indent)."""
    lines = []
    for line in text.splitlines():
        content = line.lstrip(" ")
        lines.append((min(len(line) - len(content), MAX_INDENT), content))
    return lines


def outbox(request: HttpRequest) -> HttpResponse:
    _require_debug()
    rows = []
    for name in outbox_messages():
        message = outbox_read(name)
        if message is not None:
            rows.append(
                {"name": name, "to": message["To"], "subject": message["Subject"], "date": message["Date"]}
            )
    return render(request, "dev/outbox.html", {"rows": rows})


def outbox_message(request: HttpRequest, name: str) -> HttpResponse:
    _require_debug()
    message = outbox_read(name)
    if message is None:
        raise Http404("No such message.")
    text, html = _parts(message)
    headers = [(k, v) for k, v in message.items()]
    return render(
        request,
        "dev/outbox_message.html",
        {
            "name": name,
            "subject": message["Subject"] or "(no subject)",
            "headers": headers,
            "text_lines": text_lines(text),
            "has_html": html is not None,
        },
    )


_LINKS_IN_NEW_TAB = '<base target="_blank">'
_HEAD = re.compile(r"<head(\s[^>]*)?>", re.IGNORECASE)


# The email's own HTML, framed by the message page: inline styles allowed, scripts and forms not.
@xframe_options_sameorigin
@csp_replace(
    {
        "default-src": ["'none'"],
        "style-src": ["'unsafe-inline'"],
        "img-src": ["*", "data:"],
        "frame-ancestors": ["'self'"],
        # Scripts stay off; same-origin only lets the message page measure the height (outbox.js);
        # links open our pages in a new, unsandboxed tab, as a webmail does.
        "sandbox": ["allow-same-origin", "allow-popups", "allow-popups-to-escape-sandbox"],
    }
)
def outbox_html(request: HttpRequest, name: str) -> HttpResponse:
    _require_debug()
    message = outbox_read(name)
    html = _parts(message)[1] if message is not None else None
    if html is None:
        raise Http404("No HTML part.")
    # Links open in a new tab, as in a webmail: inside the sandboxed frame a page could not post its
    # forms (confirm, "More like this"). The <base> goes inside <head>: before the doctype it would
    # put the page in quirks mode. The stored email is unchanged.
    with_base, found = _HEAD.subn(lambda m: m.group(0) + _LINKS_IN_NEW_TAB, html, count=1)
    return HttpResponse(with_base if found else _LINKS_IN_NEW_TAB + html)


def outbox_raw(request: HttpRequest, name: str) -> HttpResponse:
    _require_debug()
    message = outbox_read(name)
    if message is None:
        raise Http404("No such message.")
    response = HttpResponse(message.as_bytes(), content_type="message/rfc822")
    response["Content-Disposition"] = f'attachment; filename="{name}"'
    return response
