import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")

app = Celery("config")
# Every Celery setting lives in Django settings under the CELERY_ namespace (see base.py).
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
