"""The admin log-in's per-username delay (newsletter.services.login_throttle) wired into Django's
authentication: a backend that refuses early attempts, and the receivers that count the outcomes."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.signals import user_logged_in, user_login_failed
from django.core.exceptions import PermissionDenied
from django.dispatch import receiver
from django.http import HttpRequest

from newsletter.client_address import client_key
from newsletter.services.login_throttle import (
    login_failure_record,
    login_success_record,
    login_wait_seconds,
)

# Set on a request refused for being early, so the failure it raises is not counted again.
_REFUSED = "_login_throttle_refused"


class UsernameDelayBackend:
    """Refuses, without checking the password, an attempt made before the username's delay ran out.
    Listed before ModelBackend in AUTHENTICATION_BACKENDS; it never logs anyone in, so it has no
    get_user() (Client.force_login() would pick it and log no one in)."""

    def authenticate(self, request: HttpRequest | None, username: str | None = None, **credentials):
        if request is None or not username:
            return None
        wait = login_wait_seconds(username=username, client=client_key(request))
        if wait:
            setattr(request, _REFUSED, True)
            unit = "second" if wait == 1 else "seconds"
            messages.error(request, f"Too many failed log-ins for this username: try again in {wait} {unit}.")
            raise PermissionDenied
        return None


def refused_early(request: HttpRequest, credentials: dict | None = None) -> bool:
    """AXES_WHITELIST_CALLABLE: an attempt this backend refused unchecked is not a failure of the
    network either, or a stranger's attack would get the operator's network locked out while it waits."""
    return getattr(request, _REFUSED, False)


@receiver(user_login_failed, dispatch_uid="newsletter.login_failed")
def count_failure(sender, credentials: dict, request: HttpRequest | None = None, **kwargs) -> None:
    username = credentials.get("username")
    if request is not None and username and not getattr(request, _REFUSED, False):
        login_failure_record(username=username)


@receiver(user_logged_in, dispatch_uid="newsletter.logged_in")
def remember_network(sender, request: HttpRequest | None, user, **kwargs) -> None:
    if request is not None:
        login_success_record(username=user.get_username(), client=client_key(request))
