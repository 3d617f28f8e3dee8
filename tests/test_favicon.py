"""The site icon: a real icon file, linked from our pages and found at /favicon.ico for the others."""

from __future__ import annotations

import pytest
from django.contrib.staticfiles import finders
from django.test import Client
from PIL import Image

pytestmark = pytest.mark.django_db


def test_favicon_ico_redirects_to_the_static_icon() -> None:
    response = Client().get("/favicon.ico")

    assert response.status_code == 301
    assert response["Location"] == "/static/favicon.ico"


def test_the_static_icon_is_a_small_real_icon() -> None:
    with Image.open(finders.find("favicon.ico")) as icon:
        assert icon.format == "ICO"
        assert (16, 16) in icon.info["sizes"] and (32, 32) in icon.info["sizes"]


def test_pages_link_the_icon() -> None:
    assert b'<link rel="icon" href="/static/favicon.ico">' in Client().get("/subscribe/").content
