"""Searches and filters read from the URL: "Your jobs" and the operator console's.

Every text goes through a form's CharField, which refuses NUL (PostgreSQL's text cannot hold
it) with a message beside the field, as Django admin's search box does; a choice must be one.
"""

from datetime import timedelta
from urllib.parse import urlencode

from django import forms
from django.utils import timezone

from jobs.models import AuditEntry, Job, Preferences
from parroter.middleware import zone_names

HISTORY_RANGES = {
    "1h": (timedelta(hours=1), timedelta(minutes=1)),
    "24h": (timedelta(hours=24), timedelta(minutes=5)),
    "7d": (timedelta(days=7), timedelta(hours=1)),
}
DEFAULT_RANGE = "24h"


class JobSearchForm(forms.Form):
    """The filters of "Your jobs": the start of an image's name (in any case), a status."""

    q = forms.CharField(
        required=False,
        max_length=200,
        label="Image name starts with",
        widget=forms.TextInput(attrs={"placeholder": "e.g. IMG_2026", "type": "search"}),
    )
    status = forms.ChoiceField(
        required=False, choices=[("", "Any status"), *Job.Status.choices], label="Status"
    )

    @property
    def chosen(self) -> dict[str, str]:
        """The valid filters that are set (a field with an error is left out, its message
        shown beside it), as find_jobs and the pages' links take them."""
        self.is_valid()
        return {name: value for name, value in self.cleaned_data.items() if value}

    @property
    def query(self) -> str:
        """The chosen filters as a query string, for links to other pages of the list."""
        return urlencode(self.chosen)


class AuditFilterForm(JobSearchForm):
    """The audit log's filters: an action, who did it (a username), a job it changed."""

    q = None
    status = None
    action = forms.ChoiceField(
        required=False, choices=[("", "Any action"), *AuditEntry.Action.choices], label="Action"
    )
    actor = forms.CharField(
        required=False,
        max_length=150,
        label="By",
        widget=forms.TextInput(attrs={"placeholder": "Username"}),
    )
    job = forms.UUIDField(
        required=False,
        label="Job",
        widget=forms.TextInput(attrs={"placeholder": "Job id"}),
        error_messages={"invalid": "Give a whole job id, as its page shows it."},
    )


class JobFilterForm(forms.Form):
    """The console's filters and history range, read from the URL so a view can be shared
    and reloaded."""

    CREATED_WITHIN = {
        "1h": ("Last hour", timedelta(hours=1)),
        "24h": ("Last 24 hours", timedelta(hours=24)),
        "7d": ("Last 7 days", timedelta(days=7)),
        "30d": ("Last 30 days", timedelta(days=30)),
    }

    q = forms.CharField(
        required=False,
        max_length=255,
        label="Search",
        widget=forms.TextInput(
            attrs={"placeholder": "Job id or prefix, task id, file name prefix", "type": "search"}
        ),
    )
    status = forms.ChoiceField(required=False, choices=[("", "Any status"), *Job.Status.choices])
    kind = forms.ChoiceField(required=False, choices=[("", "Any kind"), *Job.Kind.choices])
    owner = forms.CharField(
        required=False, max_length=150, widget=forms.TextInput(attrs={"placeholder": "Username"})
    )
    created = forms.ChoiceField(
        required=False,
        label="Submitted",
        choices=[("", "Any time"), *((key, label) for key, (label, _) in CREATED_WITHIN.items())],
    )

    range = forms.ChoiceField(
        required=False, choices=[(name, name) for name in HISTORY_RANGES], widget=forms.HiddenInput
    )
    # One failure group (/ops/failures/): its signature.
    group = forms.CharField(required=False, max_length=48, widget=forms.HiddenInput)

    @property
    def history_range(self) -> str:
        self.is_valid()
        return self.cleaned_data.get("range") or DEFAULT_RANGE

    def job_filters(self) -> dict:
        """Keyword arguments for jobs.selectors.find_jobs; a field with an error is ignored."""
        self.is_valid()
        data = self.cleaned_data
        within = self.CREATED_WITHIN.get(data.get("created", ""), (None, None))[1]
        return {
            "status": data.get("status", ""),
            "kind": data.get("kind", ""),
            "owner": data.get("owner", "").strip(),
            "search": data.get("q", ""),
            "created_after": timezone.now() - within if within else None,
            "group": data.get("group", ""),
        }

    def query(self, **changes: str) -> str:
        """The URL query of these filters (only those set), with `changes` applied."""
        self.is_valid()
        values = {name: self.cleaned_data.get(name) or "" for name in self.fields}
        values.update(changes)
        return urlencode({name: value for name, value in values.items() if value})


class ApiTokenForm(forms.Form):
    name = forms.CharField(
        max_length=100,
        help_text="What the token is for, so you can tell your tokens apart: “nightly export”.",
    )


class PreferencesForm(forms.ModelForm):
    time_zone = forms.ChoiceField(required=False, label="Show times in")

    class Meta:
        model = Preferences
        fields = ["time_zone"]

    def __init__(self, *args, browser_zone: str, **kwargs):
        super().__init__(*args, **kwargs)
        browser = f"My browser's zone ({browser_zone})" if browser_zone else "My browser's zone"
        self.fields["time_zone"].choices = [
            ("", browser),
            *((name, name.replace("_", " ")) for name in sorted(zone_names())),
        ]
