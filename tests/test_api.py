"""The JSON API (/api/): each endpoint for each kind of caller, token and session (with CSRF)
authentication, the upload form's checks and messages, keyset pages, and errors that are always
JSON with the right status. Jobs stay queued here (these tests never commit, so none is sent to
a worker); finished ones are run in this process."""

import io
import zipfile

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.utils.crypto import get_random_string

from jobs import selectors, tokens
from jobs.forms import ThumbnailJobForm
from jobs.models import Job
from tests.conftest import image_bytes, run_in_process, submit_image

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fast_passwords(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


class Caller:
    """A script with an API token: a client that never signs in and enforces CSRF as browsers
    do, so a POST that passes shows that tokens need none."""

    def __init__(self, user) -> None:
        self.user = user
        self.client = Client(enforce_csrf_checks=True)
        self.headers = {}
        if user is not None:
            _, plain = tokens.create_api_token(user=user, name="tests")
            self.headers = {"HTTP_AUTHORIZATION": f"Bearer {plain}"}

    def get(self, path: str, **kwargs):
        return self.client.get(path, **self.headers, **kwargs)

    def post(self, path: str, data=None, **kwargs):
        return self.client.post(path, data or {}, **self.headers, **kwargs)


@pytest.fixture
def callers(user, other_user, staff) -> dict[str, Caller]:
    people = {"anonymous": None, "owner": user, "other": other_user, "staff": staff}
    return {role: Caller(person) for role, person in people.items()}


@pytest.fixture
def jobs(user) -> dict[str, Job]:
    done = submit_image(user, image_bytes((300, 200)), name="garden.jpg", sizes=(64, 128))
    failed = submit_image(user, b"not an image", name="broken.jpg")
    for job in (done, failed):
        run_in_process(job)
        job.refresh_from_db()
    assert (done.status, failed.status) == (Job.Status.SUCCEEDED, Job.Status.FAILED)
    # As if it had failed for a reason a retry can fix: one on its input is not retried (that
    # 409 is tests/test_failures.py's).
    Job.objects.filter(pk=failed.pk).update(failure_kind=Job.FailureKind.INTERNAL)
    return {"done": done, "failed": failed, "queued": submit_image(user, image_bytes((40, 30)))}


def upload(**fields) -> dict:
    return {
        "images": SimpleUploadedFile("sunset.jpg", image_bytes((640, 480)), "image/jpeg"),
        "sizes": ["128", "256"],
        **fields,
    }


def at(path: str, jobs: dict[str, Job]) -> str:
    return path.format(**{name: job.pk for name, job in jobs.items()})


def assert_error(response, code: int, **errors) -> dict:
    """The API's one error shape, as JSON, with the status code and (if given) these field
    errors, each containing the text given."""
    assert response.status_code == code, response.content
    assert response["Content-Type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"message", "errors"} and body["message"]
    for field, part in errors.items():
        assert any(part in message for message in body["errors"][field]), body
    return body


# --- Who may do what ---------------------------------------------------------------------

API_PATHS = [
    ("get", "/api/jobs"),
    ("post", "/api/jobs"),
    ("get", "/api/jobs/{done}"),
    ("get", "/api/jobs/{done}/status"),
    ("get", "/api/jobs/{done}/archive"),
    ("post", "/api/jobs/{failed}/retry"),
    ("post", "/api/jobs/{queued}/cancel"),
    ("get", "/api/openapi.json"),
]


@pytest.mark.parametrize(("method", "path"), API_PATHS)
def test_without_a_token_or_session_every_endpoint_answers_401_json(callers, jobs, method, path):
    response = getattr(callers["anonymous"], method)(at(path, jobs))
    body = assert_error(response, 401)
    assert "Authorization: Bearer" in body["message"]
    assert response["WWW-Authenticate"] == 'Bearer realm="api"'


def test_the_docs_page_sends_people_who_are_not_signed_in_to_the_login_page(client, user):
    assert client.get("/api/docs").url == "/accounts/login/?next=/api/docs"
    client.force_login(user)
    page = client.get("/api/docs").content.decode()
    # Swagger UI from the app's own static files, not a CDN: the page works offline.
    assert "/static/ninja/swagger-ui-bundle.js" in page and "https://" not in page


JOB_ENDPOINTS = [
    ("get", "/api/jobs/{done}", 200),
    ("get", "/api/jobs/{done}/status", 200),
    ("get", "/api/jobs/{done}/archive", 200),
    ("post", "/api/jobs/{failed}/retry", 200),
    ("post", "/api/jobs/{queued}/cancel", 200),
]


@pytest.mark.parametrize("role", ["owner", "other", "staff"])
@pytest.mark.parametrize(("method", "path", "allowed"), JOB_ENDPOINTS)
def test_owner_and_staff_reach_a_job_and_others_find_nothing(
    callers, jobs, role, method, path, allowed
):
    response = getattr(callers[role], method)(at(path, jobs))
    if role == "other":
        # Someone else's job is not found, exactly like one that does not exist.
        assert_error(response, 404)
        assert response.json() == callers[role].get(f"/api/jobs/{jobs['done'].pk}x").json() | {
            "message": "No such job."
        }
    else:
        assert response.status_code == allowed, response.content


def test_a_token_that_is_sent_but_not_valid_is_refused_even_beside_a_session(client, user):
    client.force_login(user)
    assert client.get("/api/jobs").status_code == 200
    response = client.get("/api/jobs", HTTP_AUTHORIZATION="Bearer prt_revoked-or-mistyped")
    assert "not valid" in assert_error(response, 401)["message"]


def test_a_session_needs_csrf_for_posts_and_a_token_does_not(callers, user, jobs):
    session = Client(enforce_csrf_checks=True)
    session.force_login(user)
    refused = session.post(f"/api/jobs/{jobs['queued'].pk}/cancel")
    assert "CSRF" in assert_error(refused, 403)["message"]
    assert Job.objects.get(pk=jobs["queued"].pk).status == Job.Status.QUEUED
    token = get_random_string(32)
    session.cookies["csrftoken"] = token
    accepted = session.post(f"/api/jobs/{jobs['queued'].pk}/cancel", HTTP_X_CSRFTOKEN=token)
    assert accepted.status_code == 200 and accepted.json()["status"] == "cancelled"
    # GET needs none; the token's POST (Caller enforces CSRF) needs none either.
    session.cookies.pop("csrftoken")
    assert session.get("/api/jobs").status_code == 200
    assert callers["owner"].post(f"/api/jobs/{jobs['failed'].pk}/retry").status_code == 200


# --- Submitting -------------------------------------------------------------------------------


def test_submit_queues_a_job_as_the_upload_page_does(callers, user):
    response = callers["owner"].post("/api/jobs", upload(custom_sizes="800x600"))
    assert response.status_code == 201, response.content
    body = response.json()
    job = Job.objects.get()
    assert body["id"] == str(job.pk) and body["status"] == "queued" and body["result"] is None
    assert (body["owner"], body["source_name"], body["kind"]) == (
        "alice",
        "sunset.jpg",
        "thumbnails",
    )
    assert body["params"] == {**job.params, "images": [{"name": "sunset.jpg"}]}
    assert "source.jpg" not in str(body)  # where the file is stored stays inside
    assert job.params["sizes"] == [[128, 128], [256, 256], [800, 600]]
    assert [image["name"] for image in job.params["images"]] == ["sunset.jpg"]
    assert (body["images"], body["images_done"], body["problems"]) == (1, 0, [])
    assert job.owner == user and job.source.read()[:2] == b"\xff\xd8"


@pytest.mark.parametrize(
    "fields",
    [
        {"images": SimpleUploadedFile("notes.txt", b"plain text, not an image")},
        {"sizes": ["100"]},
        {"sizes": [], "custom_sizes": ""},
        {"custom_sizes": "0x0, huge"},
        {"custom_sizes": ",".join(str(size) for size in range(10, 20))},
    ],
    ids=["not-an-image", "unknown-preset", "no-size", "bad-custom-size", "too-many-sizes"],
)
def test_submit_refuses_what_the_form_refuses_with_the_forms_messages(callers, fields):
    data = upload(**fields)
    expected = ThumbnailJobForm(
        {key: value for key, value in data.items() if key != "images"}, {"images": data["images"]}
    )
    assert not expected.is_valid()
    data["images"].seek(0)
    body = assert_error(callers["owner"].post("/api/jobs", data), 400)
    assert body["errors"] == {field: list(messages) for field, messages in expected.errors.items()}
    assert not Job.objects.exists()


def test_submit_without_an_image_is_400_with_the_forms_message(callers):
    assert_error(callers["owner"].post("/api/jobs", {"sizes": ["128"]}), 400, images="required")


def test_a_file_over_the_limit_is_413_unless_something_else_is_wrong_too(callers, settings):
    settings.PARROTER_MAX_UPLOAD_BYTES = 5_000
    big = image_bytes((800, 600), quality=95)
    assert len(big) > 5_000
    body = assert_error(
        callers["owner"].post("/api/jobs", upload(images=SimpleUploadedFile("big.jpg", big))),
        413,
        images="the limit is 4.9\xa0KB",
    )
    assert set(body["errors"]) == {"images"}
    both = upload(images=SimpleUploadedFile("big.jpg", big), sizes=[], custom_sizes="")
    assert_error(callers["owner"].post("/api/jobs", both), 400, images="limit", sizes="at least")
    # Several files: 413 only when each was refused for its size.
    two_big = upload(images=[SimpleUploadedFile(name, big) for name in ("a.jpg", "b.jpg")])
    assert_error(callers["owner"].post("/api/jobs", two_big), 413, images="a.jpg: The file is")
    big_and_text = upload(
        images=[SimpleUploadedFile("big.jpg", big), SimpleUploadedFile("notes.jpg", b"text")]
    )
    assert_error(callers["owner"].post("/api/jobs", big_and_text), 400, images="notes.jpg: This")
    assert not Job.objects.exists()


def test_files_past_the_job_limit_beside_another_file_field_are_refused_not_a_500(
    callers, settings
):
    # Another file field fills the request's byte allowance, so the image is not kept.
    settings.PARROTER_MAX_JOB_BYTES = 10_000
    data = {
        "junk": SimpleUploadedFile("junk.bin", bytes(20_000)),
        **upload(images=SimpleUploadedFile("a.jpg", image_bytes((40, 30)))),
    }
    body = assert_error(callers["owner"].post("/api/jobs", data), 413, images="per job")
    assert "Not kept" in body["errors"]["images"][0]
    assert not Job.objects.exists()


def test_an_empty_file_among_good_ones_is_left_out_by_name(callers):
    files = [
        SimpleUploadedFile("good.jpg", image_bytes((40, 30))),
        SimpleUploadedFile("empty.jpg", b""),
    ]
    response = callers["owner"].post("/api/jobs", upload(images=files))
    assert response.status_code == 201, response.content
    assert response.json()["problems"] == [{"name": "empty.jpg", "error": "The file is empty."}]
    assert Job.objects.get().images[0]["name"] == "good.jpg"


# --- Reading ----------------------------------------------------------------------------------


def test_one_job_in_full(callers, jobs):
    done = jobs["done"]
    body = callers["owner"].get(f"/api/jobs/{done.pk}").json()
    assert body["status"] == "succeeded" and body["progress"] == 100 and body["attempts"] == 1
    assert body["result"]["archive_url"] == f"/api/jobs/{done.pk}/archive"
    assert sorted((t["width"], t["height"]) for t in body["result"]["thumbnails"]) == [
        (64, 43),
        (128, 85),
    ]
    assert body["finished_at"] is not None and body["started_at"] is not None


def test_status_is_the_same_document_as_the_job_pages_status_json(client, callers, user, jobs):
    client.force_login(user)
    jobs["cancelled"] = submit_image(user, image_bytes((20, 20)))
    callers["owner"].post(f"/api/jobs/{jobs['cancelled'].pk}/cancel")
    for job in jobs.values():
        job.refresh_from_db()
        api = callers["owner"].get(f"/api/jobs/{job.pk}/status")
        page = client.get(f"/jobs/{job.pk}/status.json")
        assert api.status_code == page.status_code == 200
        assert api.json() == page.json() == selectors.job_status(job=job).model_dump(mode="json")
        assert set(api.json()) == {
            "id", "status", "progress", "error", "images", "images_done", "problems", "result"
        }  # fmt: skip
    statuses = {client.get(f"/jobs/{job.pk}/status.json").json()["status"] for job in jobs.values()}
    assert statuses == {"succeeded", "failed", "queued", "cancelled"}


def test_the_archive_is_the_download_pages_zip(client, callers, user, jobs):
    client.force_login(user)
    response = callers["owner"].get(f"/api/jobs/{jobs['done'].pk}/archive")
    assert response["Content-Type"] == "application/zip"
    assert response["Content-Disposition"] == 'attachment; filename="garden-thumbnails.zip"'
    content = b"".join(response.streaming_content)
    page = client.get(f"/jobs/{jobs['done'].pk}/download")
    assert content == b"".join(page.streaming_content)
    with zipfile.ZipFile(io.BytesIO(content)) as archive:
        assert sorted(archive.namelist()) == sorted(
            thumb["name"] for thumb in jobs["done"].result["thumbnails"]
        )
    for job in ("failed", "queued"):
        response = callers["owner"].get(f"/api/jobs/{jobs[job].pk}/archive")
        assert assert_error(response, 404)["message"] == "This job has no archive."


def test_the_list_is_ones_own_jobs_and_staff_see_everyones(
    callers, user, other_user, jobs, django_assert_max_num_queries
):
    theirs = submit_image(other_user, image_bytes((20, 20)))
    # The token, its last use, the role's permissions (the user's and their groups'), and one
    # page: its ids, then its rows with their owners, then which jobs they re-ran.
    with django_assert_max_num_queries(7):
        response = callers["owner"].get("/api/jobs")
    owner_sees = [item["id"] for item in response.json()["items"]]
    newest_first = [str(job.pk) for job in sorted(jobs.values(), key=lambda job: job.created_at)]
    assert owner_sees == newest_first[::-1]
    assert [item["id"] for item in callers["other"].get("/api/jobs").json()["items"]] == [
        str(theirs.pk)
    ]
    everyone = callers["staff"].get("/api/jobs").json()["items"]
    assert {item["owner"] for item in everyone} == {"alice", "bob"} and len(everyone) == 4


def test_the_list_filters_by_status_and_kind(callers, jobs):
    def ids(query: str) -> set[str]:
        response = callers["owner"].get(f"/api/jobs?{query}")
        assert response.status_code == 200, response.content
        return {item["id"] for item in response.json()["items"]}

    assert ids("status=failed") == {str(jobs["failed"].pk)}
    assert ids("status=queued&kind=thumbnails") == {str(jobs["queued"].pk)}
    assert ids("status=cancelled") == set()
    assert_error(callers["owner"].get("/api/jobs?status=lost"), 400, status="'queued'")
    assert_error(callers["owner"].get("/api/jobs?kind=video"), 400, kind="thumbnails")


def test_the_list_pages_by_cursor_both_ways(callers, user, monkeypatch):
    monkeypatch.setattr(selectors, "PAGE_SIZE", 2)
    made = [submit_image(user, image_bytes((20, 20))) for _ in range(5)]
    expected = [str(job.pk) for job in made[::-1]]

    seen, query, pages = [], "", []
    while True:
        page = callers["owner"].get(f"/api/jobs{query}").json()
        pages.append(page)
        seen += [item["id"] for item in page["items"]]
        if page["next"] is None:
            break
        query = f"?after={page['next']}"
    assert seen == expected and len(pages) == 3
    assert pages[0]["previous"] is None and pages[-1]["previous"] is not None

    back = callers["owner"].get(f"/api/jobs?before={pages[-1]['previous']}").json()
    assert [item["id"] for item in back["items"]] == expected[2:4]
    for query in ["after=nonsense", "before=123_nothex"]:
        name = query.split("=")[0]
        assert_error(callers["owner"].get(f"/api/jobs?{query}"), 400, **{name: "pattern"})


# --- Acting -----------------------------------------------------------------------------------


def test_retry_and_cancel_answer_409_when_the_jobs_state_does_not_allow_it(callers, jobs):
    owner = callers["owner"]
    retried = owner.post(f"/api/jobs/{jobs['failed'].pk}/retry")
    assert retried.status_code == 200 and retried.json()["status"] == "queued"
    again = assert_error(owner.post(f"/api/jobs/{jobs['failed'].pk}/retry"), 409)
    assert again["message"].startswith("The job's status is queued: only a failed or cancelled")

    cancelled = callers["staff"].post(f"/api/jobs/{jobs['queued'].pk}/cancel")
    assert cancelled.json()["status"] == "cancelled"
    assert cancelled.json()["error"] == "Cancelled by olivia."
    assert_error(owner.post(f"/api/jobs/{jobs['queued'].pk}/cancel"), 409)
    assert_error(owner.post(f"/api/jobs/{jobs['done'].pk}/cancel"), 409)


# --- Errors -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("get", "/api/", 404),
        ("get", "/api/no-such-thing", 404),
        ("get", "/api/jobs/", 404),
        ("get", "/api/jobs/not-a-uuid", 404),
        ("get", "/api/jobs/0b7d2a4e-7d44-4c1e-9a36-000000000000", 404),
        ("get", "/api/jobs/0b7d2a4e-7d44-4c1e-9a36-000000000000/status", 404),
        ("delete", "/api/jobs", 405),
        ("put", "/api/jobs/0b7d2a4e-7d44-4c1e-9a36-000000000000", 405),
        ("get", "/api/jobs/0b7d2a4e-7d44-4c1e-9a36-000000000000/retry", 405),
    ],
)
def test_what_the_api_does_not_have_is_a_json_error(callers, method, path, status):
    response = getattr(callers["owner"].client, method)(path, **callers["owner"].headers)
    assert_error(response, status)
    if status == 405:
        assert response["Allow"] in {"GET, POST", "GET", "POST"}  # sorted


def test_bodies_django_refuses_are_413_and_400_json(callers, settings):
    owner = callers["owner"]
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000  # the fields, not the files
    too_big = owner.post("/api/jobs", upload(custom_sizes="1" * 2000))
    assert "too large" in assert_error(too_big, 413)["message"]
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 2_621_440
    settings.DATA_UPLOAD_MAX_NUMBER_FILES = 1
    two = [SimpleUploadedFile(f"{n}.jpg", image_bytes((10, 10))) for n in (1, 2)]
    assert_error(owner.post("/api/jobs", {"images": two, "sizes": ["128"]}), 400)
    broken = owner.client.post(
        "/api/jobs",
        b"--x\r\nContent-Disposition: form-data; name=\r\n",
        content_type="multipart/form-data; boundary=",
        **owner.headers,
    )
    assert_error(broken, 400)
    assert not Job.objects.exists()


def test_requests_past_the_rates_are_429_with_retry_after(callers, settings):
    settings.PARROTER_SUBMIT_RATE = "2/m"
    settings.PARROTER_API_RATE = "5/m"  # refused submits count against it too
    owner = callers["owner"]
    assert [owner.post("/api/jobs", upload()).status_code for _ in range(3)] == [201, 201, 429]
    refused = owner.post("/api/jobs", upload())
    assert "Too many" in assert_error(refused, 429)["message"]
    assert 0 < int(refused["Retry-After"]) <= 60
    assert owner.get("/api/jobs").status_code == 200  # the 5th request: within the general rate
    assert_error(owner.get("/api/jobs"), 429)
    # Counted per user: someone else is not held up.
    assert callers["other"].get("/api/jobs").status_code == 200
    assert Job.objects.count() == 2


def test_the_schema_documents_the_upload_forms_fields(callers):
    schema = callers["owner"].get("/api/openapi.json").json()
    body = schema["paths"]["/api/jobs"]["post"]["requestBody"]["content"]["multipart/form-data"]
    form = ThumbnailJobForm()
    assert set(body["schema"]["properties"]) == set(form.fields)
    assert body["schema"]["properties"]["sizes"]["items"]["enum"] == ["128", "256", "512"]
    assert set(schema["components"]["securitySchemes"]) == {"TokenAuth", "SessionAuth"}
