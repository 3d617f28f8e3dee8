from django.apps import AppConfig


class NewsletterConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "newsletter"

    def ready(self) -> None:
        from django.db.backends.signals import connection_created

        # Imported for their side effects: the deploy checks register, the anymail and log-in receivers
        # connect.
        from newsletter import admin_login, checks, signals  # noqa: F401
        from newsletter.db_loaders import fast_timestamptz

        # Django's timestamptz loader is pure Python: db_loaders.py explains the swap.
        connection_created.connect(fast_timestamptz, dispatch_uid="newsletter.fast_timestamptz")
