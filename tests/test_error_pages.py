"""404, 403 and 500 answer in the app's look, with words a person understands; a refusal is
one line in the log, not a traceback."""

import logging

import pytest
from django.test import RequestFactory
from django.views.defaults import server_error

pytestmark = pytest.mark.django_db
UNKNOWN_JOB = "/jobs/0b7d2a4e-7d44-4c1e-9a36-000000000000/"


def test_a_missing_job_is_a_styled_404(client, user):
    client.force_login(user)
    response = client.get(UNKNOWN_JOB)
    page = response.content.decode()
    assert response.status_code == 404
    assert "<h1>Not found</h1>" in page and 'class="topbar"' in page
    assert "Back to your jobs" in page


def test_a_page_for_the_consoles_roles_is_a_styled_403_that_says_why(client, user):
    client.force_login(user)
    response = client.get("/ops/")
    page = response.content.decode()
    assert response.status_code == 403
    assert "<h1>Not allowed</h1>" in page
    assert "The operator console is for the viewer, operator and admin roles." in page


@pytest.mark.parametrize("url", ["/ops/", "/flower/", "/metrics"])
def test_a_403_is_logged_as_one_warning_line_without_a_traceback(client, user, caplog, url):
    client.force_login(user)
    with caplog.at_level(logging.INFO, logger="django.request"):
        assert client.get(url).status_code == 403
    assert [(r.levelno, r.exc_info, r.exc_text) for r in caplog.records] == [
        (logging.WARNING, None, None)
    ]
    assert url in caplog.text and "Traceback" not in caplog.text


def test_an_internal_error_is_a_styled_500_without_details():
    response = server_error(RequestFactory().get("/"))
    page = response.content.decode()
    assert response.status_code == 500
    assert "Something went wrong on our side" in page and 'class="topbar"' in page
    assert "Traceback" not in page
