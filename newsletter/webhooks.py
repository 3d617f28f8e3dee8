"""django-anymail's webhook URLs, guarded so a malformed payload gets a 400 instead of a 500."""

from __future__ import annotations

import functools
import logging

from anymail import urls as anymail_urls
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest
from django.urls import URLPattern, path, re_path
from django.urls.resolvers import RegexPattern

logger = logging.getLogger(__name__)

# What anymail's parsers raise on a body that is not the ESP's JSON or form shape.
MALFORMED = (ValueError, KeyError, TypeError, AttributeError, IndexError)


def guard(view):
    @functools.wraps(view)  # keeps csrf_exempt and anymail's own attributes
    def guarded(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        try:
            return view(request, *args, **kwargs)
        except MALFORMED as exc:
            logger.warning("malformed ESP webhook on %s: %s", request.path, type(exc).__name__)
            return HttpResponseBadRequest("Malformed webhook payload.\n", content_type="text/plain")

    return guarded


def guarded_anymail_urlpatterns() -> list[URLPattern]:
    patterns = []
    for pattern in anymail_urls.urlpatterns:
        route = str(pattern.pattern)
        make = re_path if isinstance(pattern.pattern, RegexPattern) else path
        patterns.append(make(route, guard(pattern.callback), pattern.default_args, name=pattern.name))
    return patterns
