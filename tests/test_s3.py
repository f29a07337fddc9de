"""Jobs' files on S3-compatible storage (PARROTER_S3_BUCKET), against moto's server mode on a
free loopback port: the storage settings the environment chooses, a job from the upload form
through a real worker process to a presigned download, and the promises that matter when the
disk is not shared: nothing partial or temporary is ever left in the bucket.
"""

import io
import runpy
import threading
import time
import urllib.request
import uuid
import zipfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
from botocore.exceptions import ReadTimeoutError
from django.core.files import File
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import transaction
from django.urls import reverse
from django.utils import timezone
from storages.backends.s3 import S3Storage

import parroter.settings
from jobs import housekeeping, running, selectors
from jobs.models import Job
from parroter.local_redis import free_port
from tests.broker_fakes import HungServer
from tests.conftest import (
    celery_process,
    image_bytes,
    require,
    run_in_process,
    stop_process,
    submit_image,
    wait_for_job,
    wait_until_answering,
    worker_arguments,
)

S3_VARIABLES = (
    "PARROTER_S3_BUCKET",
    "PARROTER_S3_ENDPOINT_URL",
    "PARROTER_S3_REGION",
    "PARROTER_S3_ACCESS_KEY_ID",
    "PARROTER_S3_SECRET_ACCESS_KEY",
    "PARROTER_S3_PRESIGN_SECONDS",
    "PARROTER_S3_TIMEOUT",
)

try:
    import boto3
    from moto.server import ThreadedMotoServer
except ImportError:  # a dev dependency (pyproject.toml); require() says what is missing
    ThreadedMotoServer = None


@pytest.fixture(scope="module")
def s3_endpoint() -> str:
    """moto's S3 in server mode, in a thread of this process: workers reach it over HTTP."""
    require(ThreadedMotoServer is not None, "moto[server] is not installed")
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=free_port(), verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def s3_env(s3_endpoint) -> dict[str, str]:
    """The environment of a deployment on S3, with a fresh bucket for each test."""
    env = {
        "PARROTER_S3_BUCKET": f"parroter-{uuid.uuid4().hex[:12]}",
        "PARROTER_S3_ENDPOINT_URL": s3_endpoint,
        "PARROTER_S3_REGION": "eu-west-1",
        "PARROTER_S3_ACCESS_KEY_ID": "test-key",
        "PARROTER_S3_SECRET_ACCESS_KEY": "test-secret",
        "PARROTER_S3_PRESIGN_SECONDS": "120",
    }
    s3_client(env).create_bucket(
        Bucket=env["PARROTER_S3_BUCKET"],
        CreateBucketConfiguration={"LocationConstraint": env["PARROTER_S3_REGION"]},
    )
    return env


def s3_client(env: dict[str, str]):
    return boto3.client(
        "s3",
        endpoint_url=env["PARROTER_S3_ENDPOINT_URL"],
        region_name=env["PARROTER_S3_REGION"],
        aws_access_key_id=env["PARROTER_S3_ACCESS_KEY_ID"],
        aws_secret_access_key=env["PARROTER_S3_SECRET_ACCESS_KEY"],
    )


def settings_under(monkeypatch, env: dict[str, str]) -> dict:
    """What platform/parroter/settings.py makes of this environment (run afresh)."""
    with monkeypatch.context() as patch:
        for name in S3_VARIABLES:
            patch.delenv(name, raising=False)
        for name, value in env.items():
            patch.setenv(name, value)
        return runpy.run_path(parroter.settings.__file__)


@pytest.fixture
def on_s3(settings, monkeypatch, s3_env) -> dict[str, str]:
    """This process's default storage as settings.py makes it from s3_env."""
    settings.STORAGES = {
        **settings.STORAGES,
        "default": settings_under(monkeypatch, s3_env)["STORAGES"]["default"],
    }
    settings.PARROTER_S3_PRESIGN_SECONDS = int(s3_env["PARROTER_S3_PRESIGN_SECONDS"])
    return s3_env


def bucket_keys(env: dict[str, str]) -> list[str]:
    listing = s3_client(env).list_objects_v2(Bucket=env["PARROTER_S3_BUCKET"])
    return sorted(item["Key"] for item in listing.get("Contents", []))


def multipart_uploads(env: dict[str, str]) -> list[dict]:
    return (
        s3_client(env).list_multipart_uploads(Bucket=env["PARROTER_S3_BUCKET"]).get("Uploads", [])
    )


def parts_stored(env: dict[str, str]) -> int:
    """Parts of unfinished multipart uploads held by the bucket."""
    client, bucket = s3_client(env), env["PARROTER_S3_BUCKET"]
    return sum(
        len(client.list_parts(Bucket=bucket, Key=u["Key"], UploadId=u["UploadId"]).get("Parts", []))
        for u in multipart_uploads(env)
    )


MULTIPART_FROM = 8 * 1024 * 1024  # s3transfer's default threshold


# --- Settings -------------------------------------------------------------------------------


def test_the_environment_chooses_s3_with_its_own_names(monkeypatch, s3_env):
    storage = settings_under(monkeypatch, s3_env)["STORAGES"]["default"]
    assert storage["BACKEND"] == "storages.backends.s3.S3Storage"
    options = storage["OPTIONS"]
    assert options["bucket_name"] == s3_env["PARROTER_S3_BUCKET"]
    assert options["endpoint_url"] == s3_env["PARROTER_S3_ENDPOINT_URL"]
    assert options["region_name"] == "eu-west-1"
    assert (options["access_key"], options["secret_key"]) == ("test-key", "test-secret")
    assert options["querystring_auth"] is True and options["querystring_expire"] == 120
    assert options["default_acl"] is None  # private objects
    config = options["client_config"]
    assert config.s3 == {"addressing_style": "path"}  # what every S3-compatible server takes
    assert config.signature_version == "s3v4"
    assert config.connect_timeout == config.read_timeout == 5.0


def test_without_keys_boto3_finds_credentials_itself_and_aws_needs_no_endpoint(monkeypatch):
    made = settings_under(
        monkeypatch, {"PARROTER_S3_BUCKET": "media", "PARROTER_S3_ACCESS_KEY_ID": ""}
    )
    options = made["STORAGES"]["default"]["OPTIONS"]
    assert options["access_key"] is None and options["secret_key"] is None
    assert options["endpoint_url"] is None
    assert options["client_config"].s3 == {"addressing_style": None}
    assert options["querystring_expire"] == made["PARROTER_S3_PRESIGN_SECONDS"] == 300


def test_a_hung_s3_fails_a_storage_call_within_its_timeouts(monkeypatch, s3_env):
    hung = HungServer()  # accepts, reads, never answers
    try:
        env = {**s3_env, "PARROTER_S3_ENDPOINT_URL": f"http://127.0.0.1:{hung.port}",
               "PARROTER_S3_TIMEOUT": "0.5"}  # fmt: skip
        options = settings_under(monkeypatch, env)["STORAGES"]["default"]["OPTIONS"]
        storage = S3Storage(**options)
        started = time.monotonic()
        with pytest.raises(ReadTimeoutError):
            storage.exists("jobs/anything/source.jpg")
        took = time.monotonic() - started
    finally:
        hung.close()
    # 3 attempts of 0.5 s each, with standard retries' short backoff between them.
    assert took < 5, took


def test_without_a_bucket_files_stay_on_the_local_disk(monkeypatch):
    made = settings_under(monkeypatch, {})
    assert made["STORAGES"]["default"] == {"BACKEND": "django.core.files.storage.FileSystemStorage"}


# --- A job from the form to the download ----------------------------------------------------


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)  # the worker is another process
def test_a_job_runs_on_a_worker_that_shares_only_the_bucket(
    client, user, other_user, own_broker, on_s3, media_root, tmp_path
):
    # The worker is another process: it gets the same environment, and the test's broker
    # alone, so no other worker of the session takes the job.
    name = f"s3-{uuid.uuid4().hex[:6]}@localhost"
    worker = celery_process(
        worker_arguments(name), log=tmp_path / "worker.log", REDIS_URL=own_broker.url, **on_s3
    )
    try:
        wait_until_answering(worker, name)
        client.force_login(user)
        image = SimpleUploadedFile("beach day.jpg", image_bytes((900, 600)))
        response = client.post(
            reverse("dashboard:upload"), {"images": image, "sizes": ["128"], "custom_sizes": "64"}
        )
        assert response.status_code == 302, response.content.decode()[:2000]
        job = wait_for_job(Job.objects.get(pk=response.url.rstrip("/").rsplit("/", 1)[1]))
    finally:
        stop_process(worker)
    assert job.status == Job.Status.SUCCEEDED, f"{job.error}\n{worker.output()[-3000:]}"

    folder = f"jobs/{job.pk}"
    archive = f"{folder}/thumbnails-{job.task_id}.zip"
    assert bucket_keys(on_s3) == [f"{folder}/source.jpg", archive]
    assert multipart_uploads(on_s3) == []
    assert not (media_root / folder).exists()  # nothing went to this host's disk
    assert not any((media_root / "tmp").iterdir())

    download = client.get(reverse("dashboard:download", args=[job.pk]))
    assert download.status_code == 302
    location = urlsplit(download["Location"])
    assert f"{location.scheme}://{location.netloc}" == on_s3["PARROTER_S3_ENDPOINT_URL"]
    assert location.path == f"/{on_s3['PARROTER_S3_BUCKET']}/{archive}"
    query = parse_qs(location.query)
    assert query["X-Amz-Expires"] == ["120"]
    assert query["X-Amz-Credential"][0].startswith("test-key/")
    with urllib.request.urlopen(download["Location"], timeout=10) as fetched:  # noqa: S310
        assert fetched.headers["Content-Disposition"] == (
            'attachment; filename="beach day-thumbnails.zip"'
        )
        assert fetched.headers["Content-Type"] == "application/zip"
        with zipfile.ZipFile(io.BytesIO(fetched.read())) as archive:
            assert archive.testzip() is None
            assert sorted(archive.namelist()) == sorted(t["name"] for t in job.result["thumbnails"])

    # A preview is read out of the archive in the bucket.
    first = job.result["thumbnails"][0]
    preview = client.get(reverse("dashboard:thumbnail", args=[job.pk, first["name"]]))
    assert preview.status_code == 200 and len(preview.content) == first["bytes"]

    client.force_login(other_user)
    refused = client.get(reverse("dashboard:download", args=[job.pk]))
    assert refused.status_code == 404 and "Location" not in refused

    with transaction.atomic():
        job.delete()
    assert bucket_keys(on_s3) == []  # a deleted job's files go with it


# --- Nothing partial ------------------------------------------------------------------------


class BreaksAfter(io.RawIOBase):
    """`size` bytes of a file whose disk fails after `good` of them were read."""

    def __init__(self, size: int, good: int, before_failing: Callable[[], None]) -> None:
        self.size, self.good, self.position = size, good, 0
        self.before_failing = before_failing
        self.lock = threading.Lock()  # s3transfer reads parts from several threads

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        with self.lock:
            base = {io.SEEK_SET: 0, io.SEEK_CUR: self.position, io.SEEK_END: self.size}[whence]
            self.position = base + offset
            return self.position

    def tell(self) -> int:
        return self.position

    def readinto(self, buffer) -> int:
        with self.lock:
            if self.position >= self.good:
                self.before_failing()
                raise OSError("disk failed")
            count = min(len(buffer), self.size - self.position, self.good - self.position)
            buffer[:count] = b"\0" * count
            self.position += count
            return count


@pytest.mark.parametrize(
    ("size", "good"),
    [(1024 * 1024, 512 * 1024), (20 * 1024 * 1024, 17 * 1024 * 1024)],
    ids=["one PUT", "multipart"],
)
def test_an_upload_that_fails_midway_leaves_no_object(on_s3, size, good):
    def once_a_part_is_stored() -> None:
        """Parts read earlier are being sent by other threads: fail once one is in the bucket,
        so that the abort has a part to remove."""
        deadline = time.monotonic() + 30
        while size > MULTIPART_FROM and parts_stored(on_s3) == 0:
            assert time.monotonic() < deadline, "no part of the multipart upload was stored"
            time.sleep(0.05)

    with pytest.raises(OSError, match="disk failed"):
        broken = BreaksAfter(size, good, once_a_part_is_stored)
        default_storage.save("jobs/broken/thumbnails.zip", File(broken))
    assert bucket_keys(on_s3) == []
    assert multipart_uploads(on_s3) == []  # an aborted multipart upload holds no parts


@pytest.mark.django_db  # in a test's transaction: no job is ever sent to a worker
def test_an_archive_stored_by_an_interrupted_delivery_is_removed(user, on_s3):
    job = submit_image(user, image_bytes((200, 100)))
    Job.objects.filter(pk=job.pk).update(status=Job.Status.RUNNING)
    # The delivery was killed after its archive reached the bucket, before success was recorded.
    stored = f"jobs/{job.pk}/thumbnails-{job.task_id}.zip"
    default_storage.save(stored, ContentFile(b"PK whole, never recorded"))
    running.discard_partial_outputs(job_id=job.pk, task_id=job.task_id)
    assert bucket_keys(on_s3) == [f"jobs/{job.pk}/source.jpg"]


@pytest.mark.django_db
def test_the_orphan_sweep_removes_folders_of_jobs_that_are_gone(user, on_s3):
    kept = submit_image(user, image_bytes((200, 100)))
    orphan = f"jobs/{uuid.uuid4()}"
    default_storage.save(f"{orphan}/source.jpg", ContentFile(b"left behind"))
    default_storage.save(f"{orphan}/thumbnails.zip", ContentFile(b"PK"))

    outcome = housekeeping.sweep_orphan_files(older_than=timedelta(0))
    assert outcome["folders"] == 1 and outcome["files"] == 2
    assert bucket_keys(on_s3) == [f"jobs/{kept.pk}/source.jpg"]


@pytest.mark.django_db
def test_the_orphan_sweep_reads_the_bucket_a_page_at_a_time(user, on_s3, monkeypatch):
    # Over a page of folders (ListObjectsV2 returns up to 1,000), owned by jobs, with orphans
    # on the first page and after it: the sweep must go on to the next page, and read it only
    # once it has dealt with the first.
    now = timezone.now()
    jobs = Job.objects.bulk_create(
        Job(owner=user, source_name="a.jpg", params={}, task_id=str(uuid.uuid4()), queued_at=now)
        for _ in range(1010)
    )
    orphans = [f"jobs/00000000-{uuid.uuid4().hex[:4]}-4000-8000-{uuid.uuid4().hex[:12]}"]
    orphans += [f"jobs/ffffffff-{uuid.uuid4().hex[:4]}-4000-8000-{uuid.uuid4().hex[:12]}"]
    client, bucket = s3_client(on_s3), on_s3["PARROTER_S3_BUCKET"]
    keys = [f"jobs/{job.pk}/source.jpg" for job in jobs] + [f"{o}/source.jpg" for o in orphans]
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda key: client.put_object(Bucket=bucket, Key=key, Body=b"x"), keys))

    def whole_listing(storage, name):
        assert name.rstrip("/") != "jobs", "the whole listing of jobs/ was read"
        return listdir(storage, name)

    listdir = S3Storage.listdir
    monkeypatch.setattr(S3Storage, "listdir", whole_listing)
    calls = []
    events = default_storage.bucket.meta.client.meta.events
    for operation in ("ListObjectsV2", "DeleteObject"):
        events.register(f"before-call.s3.{operation}", lambda model, **_: calls.append(model.name))

    outcome = housekeeping.sweep_orphan_files(older_than=timedelta(0))
    assert outcome == {"folders": 2, "files": 2}
    # A page, the first orphan (its file, then its folder's key), the next page, the last one.
    page, delete = "ListObjectsV2", "DeleteObject"
    assert calls == [page, delete, delete, page, delete, delete]
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket)
    assert sorted(item["Key"] for page in pages for item in page["Contents"]) == sorted(keys[:-2])


@pytest.mark.django_db
def test_a_preview_reads_ranges_of_the_archive_never_all_of_it(user, on_s3, monkeypatch):
    from storages.backends.s3 import S3File

    job = submit_image(user, image_bytes((300, 200)), sizes=(64, 128))
    run_in_process(job)
    job.refresh_from_db()
    thumb = job.result["thumbnails"][0]
    with default_storage.open(job.archive.name, "rb") as whole, zipfile.ZipFile(whole) as zf:
        expected = zf.read(thumb["name"])

    def whole_download(self):
        raise AssertionError("the whole archive was downloaded for one preview")

    monkeypatch.setattr(S3File, "file", property(whole_download))
    assert selectors.thumbnail_content(job=job, name=thumb["name"]) == expected
    assert selectors.thumbnail_content(job=job, name="not-in-the-job.jpg") is None
