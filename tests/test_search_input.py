"""Every search and filter field answers whatever a browser can send with results or a clear
message (a form's message on pages, 400 JSON from the API), never a 500, on the database the
suite runs on (SQLite, and PostgreSQL in .ci/run's second run): text ending in U+D7FF (the next
code point is a surrogate), U+10FFFF (there is no next), NUL (PostgreSQL's text cannot hold it),
and bytes that are not UTF-8 (%ED%A0%80, a lone surrogate's encoding, reaches the view as
U+FFFD three times). Name searches find exactly the names that start with the text."""

import re
from urllib.parse import quote_from_bytes

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from jobs import tokens
from jobs.models import Job
from tests.conftest import confirm_bulk

pytestmark = pytest.mark.django_db

CONSOLE_FILTERS = ["q", "status", "kind", "owner", "created", "range"]
# Each page's search and filter fields, as its forms and links send them.
FIELDS = {
    "/jobs/": ["q", "after", "before"],
    "/ops/": [*CONSOLE_FILTERS, "after", "before"],
    "/ops/jobs": [*CONSOLE_FILTERS, "after", "before", "v"],
    "/ops/stats": ["range", "v"],
    "/ops/bulk/cancel": CONSOLE_FILTERS,
    "/ops/bulk/retry": CONSOLE_FILTERS,
    "/admin/jobs/job/": ["q", "status__exact", "kind__exact", "created_at__gte", "p"],
    "/admin/django_celery_results/taskresult/": ["q", "status", "date_done__gte"],
    "/admin/auth/user/": ["q", "is_staff__exact", "username"],  # a library's list, too
    "/api/jobs": ["status", "kind", "after", "before"],
}
# Names to search, stored on either database: case pairs, code points at the edges, LIKE's
# wildcards, and what %ED%A0%80 becomes.
NAMES = [
    "IMG_2026.jpg",
    "img_2026.jpg",
    "a\ud7ff.jpg",
    "a\ue000.jpg",
    "a\U0010ffff.jpg",
    "A\U0010ffff.jpg",
    "\U0010ffff\U0010ffff.png",
    "100%_done.jpg",
    "back\\slash.jpg",
    "ünï.jpg",
    "Ünï.jpg",
    "😀.png",
    "\ufffd\ufffd\ufffd.png",
    "ab.jpg",
]
TRICKY = ["\x00", "\ud7ff", "\ue000", "\U0010ffff", "\ufffd", "%", "_", "\\", " ", "-"]
# What a browser can put in a query: any text (sent as UTF-8, which holds no lone surrogate)
# or any bytes (typed as %XX).
CHARACTERS = st.characters(exclude_categories=["Cs"])
TEXT = st.lists(st.one_of(CHARACTERS, st.sampled_from(TRICKY)), max_size=12).map("".join)
SENT = st.one_of(TEXT.map(str.encode), st.binary(max_size=12))
REGRESSIONS = {
    "ends in U+D7FF": "a\ud7ff".encode(),
    "U+10FFFF": "\U0010ffff".encode(),
    "ends in U+10FFFF": "a\U0010ffff".encode(),
    "NUL": b"a\x00b",
    "a lone surrogate's bytes": b"\xed\xa0\x80",
    "not UTF-8": b"\xff\xfe",
    "too long": b"x" * 300,
}
# The rows each page lists, by job id.
ROWS = {
    "/jobs/": r'<a href="/jobs/([0-9a-f-]{36})/">',
    "/ops/jobs": r'<tr data-job="([0-9a-f-]{36})"',
    "/admin/jobs/job/": r'name="_selected_action" value="([0-9a-f-]{36})"',
}


@pytest.fixture
def root(django_user_model, settings):
    settings.PARROTER_API_RATE = "100000/m"  # generated requests come faster than any script's
    return django_user_model.objects.create_superuser(username="root", password=None)


@pytest.fixture
def named_jobs(root) -> dict[str, str]:
    """name -> job id, all owned by root, with a queued and a failed one for the bulk pages."""
    jobs = {
        name: Job.objects.create(owner=root, source_name=name, params={"sizes": [[64, 64]]})
        for name in NAMES
    }
    Job.objects.filter(source_name="ab.jpg").update(status=Job.Status.FAILED)
    return {name: str(job.pk) for name, job in jobs.items()}


@pytest.fixture
def signed_in(client, root, named_jobs):
    client.force_login(root)
    _, plain = tokens.create_api_token(user=root, name="search")
    client.defaults["HTTP_AUTHORIZATION"] = f"Bearer {plain}"  # the API's; pages use the session
    return client


def get(client, url: str, fields: dict[str, bytes]):
    query = "&".join(f"{name}={quote_from_bytes(raw, safe='')}" for name, raw in fields.items())
    return client.get(f"{url}?{query}")


def assert_answered(url: str, response) -> None:
    if url.startswith("/api/"):
        assert response.status_code in (200, 400), response.content
        assert response["Content-Type"].startswith("application/json")
    elif url.startswith("/admin/"):
        # A filter admin cannot use sends back to the unfiltered list (Django's way).
        assert response.status_code == 200 or response.url.endswith("?e=1"), response
    else:
        assert response.status_code == 200, response


@pytest.mark.parametrize("raw", REGRESSIONS.values(), ids=REGRESSIONS.keys())
@pytest.mark.parametrize(
    ("url", "field"), [(url, field) for url, fields in FIELDS.items() for field in fields]
)
def test_every_field_answers_the_known_hard_cases(signed_in, url, field, raw):
    assert_answered(url, get(signed_in, url, {field: raw}))


@pytest.mark.parametrize("url", FIELDS)
@settings(
    max_examples=25,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_every_field_answers_whatever_a_browser_sends(signed_in, url, data):
    fields = data.draw(st.fixed_dictionaries({}, optional=dict.fromkeys(FIELDS[url], SENT)))
    assert_answered(url, get(signed_in, url, fields))


# Prefixes of the names, and any other text a browser sends but NUL (see the test after).
PREFIXES = st.one_of(
    st.tuples(st.sampled_from(NAMES), st.integers(1, 20)).map(lambda pair: pair[0][: pair[1]]),
    TEXT.filter(lambda text: "\x00" not in text),
)


@pytest.mark.parametrize("url", ROWS)
@settings(
    max_examples=40,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(text=PREFIXES)
@example(text="a\ud7ff")
@example(text="a\U0010ffff")
@example(text="\U0010ffff")
@example(text="\U0010ffff\U0010ffff.png")
@example(text="100%")
@example(text="IMG_")
@example(text="img_")
@example(text="ü")
@example(text="ÜN")
def test_a_name_search_finds_exactly_the_names_that_start_with_it_in_any_case(
    signed_in, named_jobs, url, text
):
    searched = text.strip()
    if re.fullmatch(r"[0-9a-fA-F-]{4,}", searched):
        return  # an id prefix too, which tests/test_ops.py covers
    response = get(signed_in, url, {"q": text.encode()})
    assert response.status_code == 200
    found = set(re.findall(ROWS[url], response.content.decode()))
    key = searched.casefold()
    expected = {job_id for name, job_id in named_jobs.items() if name.casefold().startswith(key)}
    assert found == expected, [name for name, job_id in named_jobs.items() if job_id in found]


def test_what_django_makes_of_a_lone_surrogates_bytes_is_searched_for(signed_in, named_jobs):
    found = re.findall(ROWS["/ops/jobs"], get(signed_in, "/ops/jobs", {"q": b"\xed\xa0\x80"}).text)
    assert found == [named_jobs["\ufffd\ufffd\ufffd.png"]]


@pytest.mark.parametrize(
    ("url", "field"),
    [
        ("/jobs/", "q"),
        ("/ops/", "q"),
        ("/ops/", "owner"),
        ("/ops/bulk/cancel", "q"),
        ("/admin/jobs/job/", "q"),
        ("/admin/jobs/job/", "status__exact"),
        ("/admin/django_celery_results/taskresult/", "status"),
    ],
)
def test_nul_is_refused_with_a_message(signed_in, url, field):
    response = signed_in.get(url, {field: "a\x00b"}, follow=True)
    assert response.status_code == 200
    assert "Null characters are not allowed." in response.text


@pytest.mark.parametrize("query", [{"q": "a\x00b"}, {"owner": "\x00"}, {"q": "x" * 300}])
def test_a_bulk_action_never_drops_a_filter_it_cannot_use(signed_in, query):
    queued = set(Job.objects.filter(status=Job.Status.QUEUED).values_list("pk", flat=True))
    assert "These filters are not valid" in signed_in.get("/ops/bulk/cancel", query).text
    confirm_bulk(signed_in, "cancel", query)
    assert set(Job.objects.filter(status=Job.Status.QUEUED).values_list("pk", flat=True)) == queued
