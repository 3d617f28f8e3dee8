"""django-anymail tracking webhooks land here: store fast, process in Celery."""

from anymail.signals import tracking
from django.dispatch import receiver

from newsletter.services.deliverability.events import event_store


@receiver(tracking, dispatch_uid="newsletter.esp_tracking")
def esp_tracking(sender, event, esp_name: str, **kwargs) -> None:
    from newsletter.tasks import process_email_event

    stored = event_store(event=event, esp_name=esp_name)
    if stored is not None:
        process_email_event.delay_on_commit(stored.pk)
