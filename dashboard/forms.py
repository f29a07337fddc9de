from datetime import timedelta
from urllib.parse import urlencode

from django import forms
from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.template.defaultfilters import filesizeformat
from django.utils import timezone

from jobs import services
from jobs.kinds import thumbnails
from jobs.models import Job


class ThumbnailJobForm(forms.Form):
    image = forms.FileField(
        widget=forms.FileInput(attrs={"accept": "image/*"}),
    )
    sizes = forms.MultipleChoiceField(
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="Bounding boxes in pixels; thumbnails keep their aspect and are never enlarged.",
    )
    custom_sizes = forms.CharField(
        required=False,
        max_length=200,
        help_text="More sizes, comma-separated: 300 or 800x600.",
        widget=forms.TextInput(attrs={"placeholder": "e.g. 800x600, 1024"}),
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        presets = settings.PARROTER_DEFAULT_SIZES
        self.fields["image"].help_text = (
            f"JPEG, PNG, GIF, WebP, BMP or TIFF; up to "
            f"{filesizeformat(settings.PARROTER_MAX_UPLOAD_BYTES)} and "
            f"{settings.PARROTER_MAX_PIXELS / 1e6:g} megapixels."
        )
        self.fields["sizes"].choices = [(size, f"{size} px") for size in presets]
        self.fields["sizes"].initial = presets

    def clean_image(self):
        upload = self.cleaned_data["image"]
        limit = settings.PARROTER_MAX_UPLOAD_BYTES
        if upload.size > limit:
            raise ValidationError(
                f"The file is {filesizeformat(upload.size)}; the limit is {filesizeformat(limit)}."
            )
        try:
            self.image_info = thumbnails.inspect_image(
                upload, max_pixels=settings.PARROTER_MAX_PIXELS
            )
        except thumbnails.ThumbnailError as exc:
            raise ValidationError(str(exc)) from exc
        return upload

    def clean(self):
        cleaned = super().clean()
        texts = [*cleaned.get("sizes", []), *cleaned.get("custom_sizes", "").split(",")]
        boxes: list[thumbnails.Box] = []
        try:
            for text in filter(str.strip, texts):
                box = thumbnails.parse_box(text, max_edge=settings.PARROTER_MAX_EDGE)
                if box not in boxes:
                    boxes.append(box)
        except thumbnails.ThumbnailError as exc:
            self.add_error("custom_sizes", str(exc))
            return cleaned
        if not boxes:
            self.add_error("sizes", "Pick at least one size.")
        elif len(boxes) > settings.PARROTER_MAX_SIZES:
            self.add_error(
                "custom_sizes",
                f"{len(boxes)} sizes asked for; at most {settings.PARROTER_MAX_SIZES} per job.",
            )
        cleaned["boxes"] = boxes
        return cleaned

    def submit(self, *, owner: AbstractBaseUser) -> Job:
        """Queue the job this valid form describes; the upload page and the API both call it."""
        image = self.cleaned_data["image"]
        return services.submit_job(
            owner=owner,
            upload=image,
            source_name=image.name,
            extension=self.image_info.extension,
            boxes=self.cleaned_data["boxes"],
        )


# The console's history ranges: name -> (window, slot). Per-minute bars for an hour,
# 5-minute bars for a day, hourly bars for a week.
HISTORY_RANGES = {
    "1h": (timedelta(hours=1), timedelta(minutes=1)),
    "24h": (timedelta(hours=24), timedelta(minutes=5)),
    "7d": (timedelta(days=7), timedelta(hours=1)),
}
DEFAULT_RANGE = "24h"


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
        }

    def query(self, **changes: str) -> str:
        """The URL query of these filters (only those set), with `changes` applied."""
        self.is_valid()
        values = {name: self.cleaned_data.get(name) or "" for name in self.fields}
        values.update(changes)
        return urlencode({name: value for name, value in values.items() if value})
