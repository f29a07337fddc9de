"""A Celery pool process in miniature, for test_hostile_input: the memory ceiling set as the
process starts (celery_app.limit_job_memory), then jobs.

It runs in a fresh interpreter (multiprocessing's spawn), as a pool process starts from a
freshly started worker. Forked from pytest, it inherited whatever the test process had mapped
by then (earlier tests' threads and the memory malloc kept for them), all of it counted as
already in use by the ceiling yet free for a job to reuse: once in CI a 256 MB decode fitted
under a 128 MB ceiling.
"""

import io
import multiprocessing


def run_jobs(
    memory: int, sources: list[bytes], results: multiprocessing.Queue, max_memory: int = 0
) -> None:
    """Put ("ok", width of the 64 px thumbnail) or ("refused", message) per source; each job
    with the decode budget `max_memory` (0: the kind's own)."""
    import django

    django.setup()
    from django.test.utils import override_settings

    from jobs.kinds.thumbnails import DECODE_MEMORY_BUDGET, Box, ThumbnailError, make_thumbnails
    from parroter.celery_app import limit_job_memory
    from tests.test_hostile_input import MAX_PIXELS

    with override_settings(PARROTER_JOB_MEMORY=memory):
        limit_job_memory()
    for data in sources:
        try:
            made = make_thumbnails(
                io.BytesIO(data),
                [Box(64, 64)],
                io.BytesIO(),
                max_pixels=MAX_PIXELS,
                max_memory=max_memory or DECODE_MEMORY_BUDGET,
            )
            results.put(("ok", made[0].width))
        except ThumbnailError as exc:
            results.put(("refused", str(exc)))
