from django.apps import AppConfig


class NewsletterConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "newsletter"

    def ready(self) -> None:
        # Imported for their side effects: the deploy checks register, the anymail and log-in receivers
        # connect.
        from newsletter import admin_login, checks, signals  # noqa: F401
