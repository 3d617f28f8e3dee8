from django.apps import AppConfig


class PapersConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "papers"

    def ready(self) -> None:
        # Registers the `__in_array` lookup (lookups.py) on every field, for both apps' queries.
        from papers import lookups  # noqa: F401
