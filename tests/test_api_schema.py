"""schemathesis against the API's own schema: requests generated from the OpenAPI schema that
/api/openapi.json serves (valid and invalid ones), sent with an API token through Django's WSGI
application as gunicorn runs it. Every answer must be documented, match its schema and never be a
server error."""

import json
import uuid

import pytest
import schemathesis
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from schemathesis.specs.openapi.checks import negative_data_rejection, positive_data_acceptance

from jobs import tokens
from jobs.api import api
from jobs.models import Job
from parroter.wsgi import application
from tests.conftest import image_bytes, run_in_process

pytestmark = pytest.mark.django_db

# Loaded when tests are collected, before any database exists: the schema the API builds, which
# test_the_served_schema_is_the_one_tested compares with what /api/openapi.json serves. Requests
# go to the WSGI application gunicorn serves, in this process.
schema = schemathesis.openapi.from_dict(api.get_openapi_schema())
schema.app = application
# The token is sent with every request (token_header): no generated credentials, valid or not.
schema.config.generation.update(with_security_parameters=False)
EXAMPLES = 30  # per operation and phase: the whole schema in under 10 s on 2 cores

# Jobs of the token's user with ids known in advance, so that generated requests reach real
# jobs as well as the random ids that find nothing (see also_real_jobs).
KNOWN = {
    "done": uuid.UUID("5c0ffee0-0000-4000-8000-000000000001"),
    "failed": uuid.UUID("5c0ffee0-0000-4000-8000-000000000002"),
    "queued": uuid.UUID("5c0ffee0-0000-4000-8000-000000000003"),
}


@schema.hook("flatmap_path_parameters")
def also_real_jobs(context, path_parameters):
    # Only a well-formed id is swapped, so an invalid one (a negative case) stays invalid.
    try:
        uuid.UUID(str((path_parameters or {})["job_id"]))
    except (KeyError, ValueError):
        return st.just(path_parameters)
    real = st.sampled_from(sorted(KNOWN.values())).map(
        lambda job_id: {**path_parameters, "job_id": str(job_id)}
    )
    return st.one_of(st.just(path_parameters), real)


@pytest.fixture
def keep_test_connection():
    """The WSGI application works in this test's database transaction: the request signals must
    not close the test's connection, as Django's test client ensures for its own requests."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        yield
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)


@pytest.fixture
def token_header(user, settings) -> dict[str, str]:
    # Generated requests come faster than any script's; the rates have tests of their own.
    settings.PARROTER_API_RATE = settings.PARROTER_SUBMIT_RATE = "100000/m"
    _, plain = tokens.create_api_token(user=user, name="schemathesis")
    return {"Authorization": f"Bearer {plain}"}


@pytest.fixture
def known_jobs(user) -> None:
    for name, job_id in KNOWN.items():
        job = Job.objects.create(
            id=job_id,
            owner=user,
            source=SimpleUploadedFile("source.jpg", image_bytes((60, 40))),
            source_name=f"{name}.jpg",
            params={"sizes": [[32, 32]]},
            task_id=str(uuid.uuid4()),
        )
        if name == "failed":
            job.source.save("broken.jpg", SimpleUploadedFile("broken.jpg", b"no image"))
        if name != "queued":
            run_in_process(job)
    assert Job.objects.filter(status=Job.Status.SUCCEEDED).count() == 1


@schema.parametrize()
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
def test_every_generated_request_gets_a_documented_answer(
    case, keep_test_connection, token_header, known_jobs
):
    # The upload form judges more than a schema can say (a real image, at least one size, the
    # edges' limits, a preset that exists), so a submit or re-run the schema allows may still be
    # refused with 400. And a re-run needs no field at all (it takes the job's settings): a body
    # Django's multipart parser reads as no fields, whatever the schema makes of it, is one.
    label = case.operation.label
    excluded = {
        "POST /api/jobs": [positive_data_acceptance],
        "POST /api/jobs/{job_id}/rerun": [positive_data_acceptance, negative_data_rejection],
    }.get(label, [])
    case.call_and_validate(headers=token_header, excluded_checks=excluded)


def test_the_served_schema_is_the_one_tested(client, token_header):
    served = client.get("/api/openapi.json", HTTP_AUTHORIZATION=token_header["Authorization"])
    assert served.json() == json.loads(json.dumps(schema.raw_schema))
