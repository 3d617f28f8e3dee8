from django.conf import settings
from django.contrib import admin
from django.templatetags.static import static
from django.urls import include, path
from django.views.generic import RedirectView

from newsletter import dev_views, staff_views
from newsletter.webhooks import guarded_anymail_urlpatterns

urlpatterns = [
    # Browsers ask for /favicon.ico on pages that do not name an icon (the admin's): no 404 per visit.
    path("favicon.ico", RedirectView.as_view(url=static("favicon.ico"), permanent=True)),
    path("admin/", admin.site.urls),
    path("staff/stats/", staff_views.stats, name="staff_stats"),
    # ESP tracking webhooks (django-anymail): /anymail/<esp>/tracking/, protected by WEBHOOK_SECRET.
    path("anymail/", include((guarded_anymail_urlpatterns(), "anymail"))),
    path("", include("newsletter.urls")),
]

if settings.DEBUG:
    urlpatterns += [
        path("dev/outbox/", dev_views.outbox, name="dev_outbox"),
        path("dev/outbox/<str:name>/", dev_views.outbox_message, name="dev_outbox_message"),
        path("dev/outbox/<str:name>/html/", dev_views.outbox_html, name="dev_outbox_html"),
        path("dev/outbox/<str:name>/raw/", dev_views.outbox_raw, name="dev_outbox_raw"),
    ]
