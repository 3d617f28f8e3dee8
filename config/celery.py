import gc
import os
import warnings

from celery import Celery, bootsteps
from celery.exceptions import CPendingDeprecationWarning
from celery.signals import celeryd_after_setup, worker_process_init
from celery.utils.log import get_logger

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")

app = Celery("config")
# Every Celery setting lives in Django settings under the CELERY_ namespace (see base.py).
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@celeryd_after_setup.connect
def _quiet_reconnect_reminder(**kwargs) -> None:
    """worker_cancel_long_running_tasks_on_connection_loss is False on purpose (base.py says why), yet
    Celery prints a reminder on every broker reconnect that hides the lines that matter. Added after
    the worker's logging setup, which turns every Celery deprecation warning on."""
    warnings.filterwarnings(
        "ignore", r"\s*In Celery 5.1 we introduced an optional breaking change", CPendingDeprecationWarning
    )


@worker_process_init.connect
def _freeze_startup_objects(**kwargs) -> None:
    """A pool process starts with everything imported (Django, scipy, scikit-learn, the app): some
    245,000 objects that live as long as it does. Frozen, the garbage collector's full passes skip
    them. Unfrozen, a full pass over them came every few chunks and cost 130-150 ms (3,000
    subscribers, 2 processes: one each, ~0.09 ms per digest; docs/benchmark/lever-warm.md)."""
    gc.freeze()


logger = get_logger(__name__)


class SweepAfterBrokerReconnect(bootsteps.StartStopStep):
    """When the worker's broker connection comes back, queue a sweep for the deliveries queued before
    it was lost: a restarted Redis comes back empty, and without this their tasks would be found only
    when they pass NEWSLETTER_STALE_PENDING, a minute or two later. The consumer's steps stop when the
    connection is lost and start again when it is back (and once when the worker starts, which needs
    nothing). If the queue was not lost, the duplicate tasks claim nothing."""

    requires = {"celery.worker.consumer.tasks:Tasks"}

    def __init__(self, parent, **kwargs) -> None:
        super().__init__(parent, **kwargs)
        self.lost_at: str | None = None

    def stop(self, parent) -> None:
        from django.utils import timezone

        self.lost_at = timezone.now().isoformat()

    def start(self, parent) -> None:
        lost_at, self.lost_at = self.lost_at, None
        if lost_at is None:
            return
        try:
            app.send_task("newsletter.tasks.sweep_deliveries", kwargs={"queued_before": lost_at})
        except Exception as exc:  # the broker went away again; the next reconnect or beat's sweep follows
            logger.warning("could not queue the sweep after a broker reconnect: %r", exc)


app.steps["consumer"].add(SweepAfterBrokerReconnect)
