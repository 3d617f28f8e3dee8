from django.urls import path

from newsletter import reader_views, views
from newsletter.feeds import DigestFeed

app_name = "newsletter"

urlpatterns = [
    path("", views.subscribe, name="home"),
    path("subscribe/", views.subscribe, name="subscribe"),
    path("subscribe/check-your-inbox/", views.check_inbox, name="check_inbox"),
    path("confirm/<str:token>/", views.confirm, name="confirm"),
    path("manage/", views.request_link, name="request_link"),
    path("manage/<str:token>/", views.manage, name="manage"),
    path("manage/<str:token>/export/", reader_views.export, name="export"),
    path("manage/<str:token>/digests/", reader_views.archive, name="archive"),
    path("manage/<str:token>/liked/", reader_views.liked, name="liked"),
    path("manage/<str:token>/delete/", views.delete, name="delete"),
    path("manage/<str:token>/resubscribe/", views.resubscribe, name="resubscribe"),
    path("manage/<str:token>/feedback/remove/", reader_views.feedback_forget, name="feedback_forget"),
    path("manage/<str:token>/library/", reader_views.library_add, name="library_add"),
    path("manage/<str:token>/library/remove/", reader_views.library_remove, name="library_remove"),
    path("unsubscribe/<str:token>/", views.unsubscribe, name="unsubscribe"),
    path("digests/<str:token>/", views.digest_view, name="digest"),
    # Keep in step with newsletter.services.tokens.link (Purpose.FEED).
    path("feeds/<str:token>/", DigestFeed(), name="feed"),
    # Keep in step with newsletter.services.tokens.feedback_link (emails build the URL without reverse()).
    path("feedback/<str:token>/<str:choice>/", reader_views.feedback, name="feedback"),
]
