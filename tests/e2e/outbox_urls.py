"""The site's URLs plus the DEBUG-only outbox pages, which config.urls adds only when DEBUG is on at start."""

from django.urls import path

from config.urls import urlpatterns as site_urlpatterns
from newsletter import dev_views

urlpatterns = [
    *site_urlpatterns,
    path("dev/outbox/", dev_views.outbox, name="dev_outbox"),
    path("dev/outbox/<str:name>/", dev_views.outbox_message, name="dev_outbox_message"),
    path("dev/outbox/<str:name>/html/", dev_views.outbox_html, name="dev_outbox_html"),
    path("dev/outbox/<str:name>/raw/", dev_views.outbox_raw, name="dev_outbox_raw"),
]
