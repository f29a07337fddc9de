"""404, 403 and 500 answer in the app's look, with words a person understands."""

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


def test_a_page_for_staff_is_a_styled_403_that_says_why(client, user):
    client.force_login(user)
    response = client.get("/ops/")
    page = response.content.decode()
    assert response.status_code == 403
    assert "<h1>Not allowed</h1>" in page and "The operator console is for staff." in page


def test_an_internal_error_is_a_styled_500_without_details():
    response = server_error(RequestFactory().get("/"))
    page = response.content.decode()
    assert response.status_code == 500
    assert "Something went wrong on our side" in page and 'class="topbar"' in page
    assert "Traceback" not in page
