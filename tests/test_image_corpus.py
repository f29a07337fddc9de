"""Images nobody here made: every file of Pillow's own test corpus (~1,060 odd, broken and
exotic images from its source distribution) through the upload check and a real worker.

The source distribution of the installed Pillow is fetched from the package index once and
kept under var/corpus/, checked against the index's SHA-256.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import resource
import tarfile
import time
import urllib.request
from pathlib import Path

import PIL
import pytest
from django.conf import settings
from django.core.files.uploadedfile import SimpleUploadedFile, TemporaryUploadedFile
from django.utils.datastructures import MultiValueDict

from jobs import tokens
from jobs.forms import ThumbnailJobForm
from jobs.models import Job
from tests.conftest import wait_for_job

INDEX = "https://pypi.org/simple/pillow/"
CHECK_SECONDS = 1.0  # CPU per file, for files whose check takes well under 0.1 s here
CHECK_MEMORY = 256 * 1024 * 1024  # what checking the whole corpus may add to the peak RSS


def pillow_sdist() -> Path:
    """The installed Pillow's source distribution, from var/corpus/ or else from the index."""
    name = f"pillow-{PIL.__version__}.tar.gz"
    cached = settings.VAR_DIR / "corpus" / name
    if cached.exists():
        return cached
    request = urllib.request.Request(
        INDEX, headers={"Accept": "application/vnd.pypi.simple.v1+json"}
    )
    with urllib.request.urlopen(request, timeout=60) as answer:  # noqa: S310 - a fixed https URL
        entry = next(file for file in json.load(answer)["files"] if file["filename"] == name)
    with urllib.request.urlopen(entry["url"], timeout=300) as answer:  # noqa: S310
        data = answer.read()
    assert hashlib.sha256(data).hexdigest() == entry["hashes"]["sha256"]
    cached.parent.mkdir(exist_ok=True)
    partial = cached.with_suffix(f".{os.getpid()}.part")
    partial.write_bytes(data)
    partial.replace(cached)  # a second run, or a run beside this one, never sees half a file
    return cached


@pytest.fixture(scope="session")
def corpus() -> dict[str, bytes]:
    """Every non-empty file under Tests/images, by its path there ("apng/delay.png")."""
    files = {}
    with tarfile.open(pillow_sdist()) as archive:
        for member in archive:
            _, _, path = member.name.partition("/Tests/images/")
            if path and member.isfile() and member.size:
                files[path] = archive.extractfile(member).read()
    assert len(files) > 1000
    return files


def upload_name(path: str) -> str:
    return path.replace("/", "__")


def held_as(storage: str, name: str, data: bytes):
    """The file as Django hands it to the form: in memory, or in a temporary file."""
    if storage == "in-memory":
        return SimpleUploadedFile(name, data)
    upload = TemporaryUploadedFile(name, "application/octet-stream", len(data), None)
    upload.write(data)
    upload.seek(0)
    return upload


@pytest.mark.parametrize("storage", ["in-memory", "on-disk"])
def test_the_upload_check_accepts_or_refuses_every_corpus_file_with_a_message(
    corpus, storage, caplog
) -> None:
    caplog.set_level(logging.WARNING)
    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    wrong, accepted = [], 0
    for path, data in corpus.items():
        upload = held_as(storage, upload_name(path), data)
        started = time.thread_time()
        form = ThumbnailJobForm(data={"sizes": ["128"]}, files=MultiValueDict({"images": [upload]}))
        try:
            valid = form.is_valid()
        except Exception as exc:  # noqa: BLE001 - any of them is what this test looks for
            wrong.append(f"{path}: {exc!r}")
            continue
        finally:
            upload.close()
        spent = time.thread_time() - started
        if spent > CHECK_SECONDS:
            wrong.append(f"{path}: checked in {spent:.2f} s of CPU")
        if valid:
            accepted += 1
        elif not all(message.strip() for message in form.errors.get("images", [""])):
            wrong.append(f"{path}: refused without a message: {form.errors.as_json()}")
    assert wrong == []
    assert 600 < accepted < len(corpus)  # both kinds of answer were given
    assert [record.getMessage() for record in caplog.records] == []
    peak_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    assert peak_after - peak_before < CHECK_MEMORY


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_a_real_worker_makes_thumbnails_or_a_message_for_every_corpus_file(
    client, corpus, user, celery_worker
) -> None:
    _, plain = tokens.create_api_token(user=user, name="corpus")
    log_before = len(celery_worker.output())
    paths, per_job = list(corpus), settings.PARROTER_MAX_IMAGES
    batches = [paths[at : at + per_job] for at in range(0, len(paths), per_job)]
    jobs = []
    for batch in batches:
        files = [SimpleUploadedFile(upload_name(path), corpus[path]) for path in batch]
        response = client.post(
            "/api/jobs",
            {"images": files, "sizes": ["128", "256"]},
            HTTP_AUTHORIZATION=f"Bearer {plain}",
        )
        assert response.status_code == 201, response.content
        assert response["Content-Type"].startswith("application/json")
        jobs.append(Job.objects.get(pk=response.json()["id"]))

    made = failed = 0
    for job in jobs:
        wait_for_job(job, timeout=180)
        if job.status == Job.Status.FAILED:
            assert job.error.strip(), job.pk
            continue
        assert job.status == Job.Status.SUCCEEDED, (job.pk, job.status, job.error)
        with_thumbnails = {thumb["image"] for thumb in job.result["thumbnails"]}
        for index, image in enumerate(job.result["images"]):
            if index in with_thumbnails:
                made += 1
            else:
                assert image["error"].strip(), image
                failed += 1
    assert made > 600
    new_log = celery_worker.output()[log_before:]
    assert "Traceback" not in new_log
    assert " ERROR" not in new_log and "ERROR/" not in new_log
