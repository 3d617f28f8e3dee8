"""django-anymail's tracking webhook URLs, guarded: a malformed payload gets a 400, an ESP this server is
not configured for a 404, never a 500. Inbound-mail webhooks are not mounted: nothing here reads mail.
"""

from __future__ import annotations

import errno
import functools
import logging

from anymail import urls as anymail_urls
from anymail.exceptions import AnymailConfigurationError
from django.conf import settings
from django.http import (
    HttpRequest,
    HttpResponse,
    HttpResponseBadRequest,
    HttpResponseForbidden,
    HttpResponseNotFound,
)
from django.urls import URLPattern, path, re_path
from django.urls.resolvers import RegexPattern

logger = logging.getLogger(__name__)

# What anymail's parsers raise on a body that is not the ESP's JSON or form shape, including JSON
# nested deeper than the parser's recursion limit and timestamps beyond the platform's time_t.
MALFORMED = (ValueError, KeyError, TypeError, AttributeError, IndexError, RecursionError, OverflowError)


def _timestamp_overflow(exc: OSError) -> bool:
    """datetime.fromtimestamp() raises OSError(EOVERFLOW) for a timestamp past the C library's range
    (e.g. 10**17 s). Any other OSError is ours (disk, network): a 500, so the ESP retries the post."""
    return exc.errno == errno.EOVERFLOW


def _needs_secret(view) -> bool:
    # Webhooks that rely on basic auth alone (most ESPs) accept anything when no secret is set;
    # anymail only warns. Anyone could then post fake bounces and complaints and unsubscribe any
    # address, so without a secret those webhooks refuse everything. (ESPs that sign their payloads,
    # e.g. Mailgun or Postal, set warn_if_no_basic_auth = False and check their own signature.)
    view_class = getattr(view, "view_class", None)
    return bool(getattr(view_class, "warn_if_no_basic_auth", False))


def guard(view):
    needs_secret = _needs_secret(view)

    @functools.wraps(view)  # keeps csrf_exempt and anymail's own attributes
    def guarded(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        if needs_secret and not settings.ANYMAIL.get("WEBHOOK_SECRET"):
            logger.warning("ESP webhook on %s refused: ANYMAIL_WEBHOOK_SECRET is not set", request.path)
            return HttpResponseForbidden(
                "Webhooks are disabled until ANYMAIL_WEBHOOK_SECRET is configured.\n",
                content_type="text/plain",
            )
        try:
            return view(request, *args, **kwargs)
        except AnymailConfigurationError as exc:
            # Raised when the view is built: this ESP's key or package is missing, so it is not ours.
            logger.warning("ESP webhook on %s refused: %s", request.path, type(exc).__name__)
            return HttpResponseNotFound(
                "No webhook for this ESP is configured here.\n", content_type="text/plain"
            )
        except OSError as exc:
            if not _timestamp_overflow(exc):
                raise
            return _malformed(request, exc)
        except MALFORMED as exc:
            return _malformed(request, exc)

    return guarded


def _malformed(request: HttpRequest, exc: Exception) -> HttpResponse:
    logger.warning("malformed ESP webhook on %s: %s", request.path, type(exc).__name__)
    return HttpResponseBadRequest("Malformed webhook payload.\n", content_type="text/plain")


def guarded_anymail_urlpatterns() -> list[URLPattern]:
    patterns = []
    for pattern in anymail_urls.urlpatterns:
        if not pattern.name.endswith("_tracking_webhook"):
            continue
        route = str(pattern.pattern)
        make = re_path if isinstance(pattern.pattern, RegexPattern) else path
        patterns.append(make(route, guard(pattern.callback), pattern.default_args, name=pattern.name))
    return patterns
