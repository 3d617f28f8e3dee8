import gc

from celery.signals import worker_process_init

from config import celery


def test_a_pool_process_freezes_what_it_started_with() -> None:
    assert celery._freeze_startup_objects in [ref() for _, ref in worker_process_init.receivers]
    try:
        celery._freeze_startup_objects(sender="test")

        assert gc.get_freeze_count() > 10_000
    finally:
        gc.unfreeze()
