"""The submission's form, shared by the upload page and the API: every check a job's files and
output choices pass before anything is stored."""

import re

from django import forms
from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError

from jobs import services
from jobs.kinds import thumbnails
from jobs.models import Job, Preset
from jobs.units import byte_size
from jobs.uploads import OversizedUpload


class MultipleFileInput(forms.FileInput):
    allow_multiple_selected = True


class MultipleFileField(forms.FileField):
    """Several files in one input (Django's documented recipe): cleans to a list of files."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("widget", MultipleFileInput())
        super().__init__(*args, **kwargs)

    def clean(self, data, initial=None):
        chosen = data if isinstance(data, list | tuple) else [data]
        # Each file is judged on its own by the form (an empty one is left out by name, not the
        # whole upload refused); with none at all, FileField's "This field is required.".
        return [item for item in chosen if item] or [super().clean(None, initial)]


FORMAT_CHOICES = [
    ("", "Same as the image"),
    *((fmt, thumbnails.FORMAT_LABELS[fmt]) for fmt in thumbnails.OUTPUT_FORMATS),
]
FIT_CHOICES = [
    ("fit", "Fit inside the box"),
    ("crop", "Fill the box and crop"),
    ("pad", "Pad to the box"),
]


# The settings of a job, as the form takes them: remembered as a person's last and kept in
# presets (jobs.models.Preset).
CHOICE_FIELDS = ("sizes", "custom_sizes", "fit", "format", "quality", "background", "opaque")
MAX_PRESETS = 50


class ThumbnailJobForm(forms.Form):
    images = MultipleFileField(
        label="Images",
        widget=MultipleFileInput(attrs={"accept": "image/*"}),
    )
    sizes = forms.MultipleChoiceField(
        required=False,
        widget=forms.CheckboxSelectMultiple,
    )
    custom_sizes = forms.CharField(
        required=False,
        max_length=200,
        widget=forms.TextInput(attrs={"placeholder": "e.g. 800x600, 1024"}),
    )
    # Every output option may be left out (scripts): the defaults are the initial values.
    fit = forms.ChoiceField(
        required=False,
        choices=FIT_CHOICES,
        initial="fit",
        widget=forms.RadioSelect,
        help_text="Fit keeps the whole image; fill crops its centre to exactly the box; pad "
        "adds a background around it to exactly the box. Images are never enlarged: one "
        "smaller than the box is cropped to the box's shape, or padded.",
    )
    format = forms.ChoiceField(required=False, choices=FORMAT_CHOICES, label="Format")
    quality = forms.IntegerField(
        required=False,
        min_value=1,
        max_value=100,
        initial=thumbnails.DEFAULT_QUALITY,
        help_text="1–100, for JPEG, WebP and AVIF.",
    )
    background = forms.CharField(
        required=False,
        max_length=7,
        initial="#ffffff",
        label="Background",
        widget=forms.TextInput(attrs={"type": "color"}),
        help_text="For padding, and for transparency in a JPEG (it has none).",
    )
    opaque = forms.BooleanField(
        required=False,
        label="Fill transparent areas with the background colour, in every format",
    )
    preset = forms.CharField(
        required=False,
        max_length=60,
        help_text="One of your presets, by name: the settings this request leaves out.",
    )
    save_as = forms.CharField(
        required=False,
        max_length=60,
        label="Save these settings as a preset named",
        widget=forms.TextInput(attrs={"placeholder": "e.g. Web gallery"}),
    )

    def __init__(self, data=None, files=None, *, owner: AbstractBaseUser | None = None, **kwargs):
        self.owner = owner
        self.missing_preset = ""
        if data is not None and (name := data.get("preset", "").strip()) and owner is not None:
            chosen = Preset.objects.filter(owner=owner, name=name).first()
            if chosen is None:
                self.missing_preset = name
            else:  # what the request leaves out comes from the preset
                data = data.copy()
                for field, value in chosen.choices.items():
                    if field in CHOICE_FIELDS and field not in data:
                        data.setlist(field, value if isinstance(value, list) else [value])
        super().__init__(data, files, **kwargs)
        presets = settings.PARROTER_DEFAULT_SIZES
        self.fields["images"].help_text = (
            f"JPEG, PNG, GIF, WebP, BMP or TIFF: up to {settings.PARROTER_MAX_IMAGES} images, "
            f"each up to {byte_size(settings.PARROTER_MAX_UPLOAD_BYTES)} and "
            f"{settings.PARROTER_MAX_PIXELS / 1e6:g} megapixels, "
            f"{byte_size(settings.PARROTER_MAX_JOB_BYTES)} in all."
        )
        self.fields["sizes"].choices = [(size, f"{size} px") for size in presets]
        self.fields["sizes"].initial = presets
        self.fields["custom_sizes"].help_text = (
            f"More sizes, comma-separated: 300 or 800x600; each side 1–"
            f"{settings.PARROTER_MAX_EDGE} px, at most {settings.PARROTER_MAX_SIZES} sizes in all."
        )
        if "AVIF" not in thumbnails.OUTPUT_FORMATS:
            self.fields[
                "format"
            ].help_text = "AVIF is not available: this server's Pillow lacks it."
        self.accepted: list[services.Upload] = []
        self.refused: list[tuple[str, str]] = []

    @property
    def limits(self) -> dict[str, int]:
        """The limits clean() enforces, for the upload page's script to check before sending."""
        return {
            "max_images": settings.PARROTER_MAX_IMAGES,
            "max_file_bytes": settings.PARROTER_MAX_UPLOAD_BYTES,
            "max_job_bytes": settings.PARROTER_MAX_JOB_BYTES,
            "max_sizes": settings.PARROTER_MAX_SIZES,
            "max_edge": settings.PARROTER_MAX_EDGE,
        }

    def clean_images(self):
        """Check each file on its own: the readable ones go through, the others are listed by
        name; only when none is left is the upload refused. A refusal for size has the code
        "too_large" (the API answers 413 when that is all that is wrong)."""
        files = self.cleaned_data["images"]
        if len(files) > settings.PARROTER_MAX_IMAGES:
            raise ValidationError(
                f"{len(files)} files chosen; at most {settings.PARROTER_MAX_IMAGES} per job."
            )
        total = sum(upload.size for upload in files)
        if total > settings.PARROTER_MAX_JOB_BYTES:
            raise ValidationError(
                f"The files come to {byte_size(total)}; the limit per job is "
                f"{byte_size(settings.PARROTER_MAX_JOB_BYTES)}.",
                code="too_large",
            )
        refusals = []
        budget = thumbnails.CheckBudget(settings.PARROTER_UPLOAD_CHECK_SECONDS)
        for upload in files:
            try:
                info = self._inspect(upload, budget)
            except ValidationError as exc:
                refusals.append((upload.name, exc))
                self.refused.append((upload.name, exc.message))
            else:
                self.accepted.append(services.Upload(upload, upload.name, info.extension))
        if not self.accepted:
            if len(files) == 1:
                raise refusals[0][1]
            raise ValidationError(
                [ValidationError(f"{name}: {exc.message}", code=exc.code) for name, exc in refusals]
            )
        return files

    @staticmethod
    def _inspect(upload, budget: thumbnails.CheckBudget) -> thumbnails.ImageInfo:
        limit = settings.PARROTER_MAX_UPLOAD_BYTES
        if upload.size > limit:
            raise ValidationError(
                f"The file is {byte_size(upload.size)}; the limit is {byte_size(limit)}.",
                code="too_large",
            )
        if isinstance(upload, OversizedUpload):  # under its own limit: the request's passed
            raise ValidationError(
                f"Not kept: the upload passed the limit of "
                f"{byte_size(settings.PARROTER_MAX_JOB_BYTES)} per job before this file.",
                code="too_large",
            )
        if not upload.size:
            raise ValidationError("The file is empty.", code="empty")
        try:
            return thumbnails.inspect_image(
                upload, max_pixels=settings.PARROTER_MAX_PIXELS, budget=budget
            )
        except thumbnails.ThumbnailError as exc:
            raise ValidationError(str(exc), code="unreadable") from exc

    def clean_background(self):
        colour = self.cleaned_data["background"].strip() or "#ffffff"
        if not re.fullmatch(r"#[0-9a-fA-F]{6}", colour):
            raise ValidationError("Give the colour as #rrggbb, for example #ffffff.")
        return tuple(bytes.fromhex(colour[1:]))

    def clean_preset(self):
        if self.missing_preset:
            raise ValidationError(f"You have no preset named “{self.missing_preset}”.")
        return self.cleaned_data["preset"]

    def clean_save_as(self):
        name = self.cleaned_data["save_as"].strip()
        if name and self.owner is not None:
            kept = Preset.objects.filter(owner=self.owner)
            if kept.count() >= MAX_PRESETS and not kept.filter(name=name).exists():
                raise ValidationError(
                    f"You have {MAX_PRESETS} presets, the most one person may keep; delete one "
                    "in Settings first."
                )
        return name

    def choices(self) -> dict:
        """This valid form's settings, as the form takes them again."""
        data = self.cleaned_data
        return {  # what a request left out, as the form fills it in
            "sizes": data["sizes"],
            "custom_sizes": data["custom_sizes"],
            "fit": data["fit"] or "fit",
            "format": data["format"],
            "quality": data["quality"] or thumbnails.DEFAULT_QUALITY,
            "background": "#{:02x}{:02x}{:02x}".format(*data["background"]),
            "opaque": data["opaque"],
        }

    def clean(self):
        cleaned = super().clean()
        texts = [*cleaned.get("sizes", []), *cleaned.get("custom_sizes", "").split(",")]
        boxes: list[thumbnails.Box] = []
        problems = []
        for text in filter(str.strip, texts):
            try:
                box = thumbnails.parse_box(text, max_edge=settings.PARROTER_MAX_EDGE)
            except thumbnails.ThumbnailError as exc:
                problems.append(str(exc))
            else:
                if box not in boxes:
                    boxes.append(box)
        if problems:  # every bad size at once, not the first
            self.add_error("custom_sizes", problems)
        elif not boxes:
            self.add_error("sizes", "Pick at least one size.")
        elif len(boxes) > settings.PARROTER_MAX_SIZES:
            self.add_error(
                "custom_sizes",
                f"{len(boxes)} sizes asked for; at most {settings.PARROTER_MAX_SIZES} per job.",
            )
        cleaned["boxes"] = boxes
        return cleaned

    def output(self) -> thumbnails.Output:
        data = self.cleaned_data
        return thumbnails.Output(
            format=data["format"] or None,
            quality=data["quality"] or thumbnails.DEFAULT_QUALITY,
            fit=data["fit"] or "fit",
            background=data["background"],
            transparent=not data["opaque"],
        )

    def submit(self) -> Job:
        """Queue the job this valid form describes for its owner, and keep its settings as their
        last (and as a preset, if named); the upload page and the API both call it."""
        owner = self.owner
        job = services.submit_job(
            owner=owner,
            uploads=self.accepted,
            boxes=self.cleaned_data["boxes"],
            output=self.output(),
            refused=self.refused,
        )
        services.remember_choices(
            owner=owner, choices=self.choices(), save_as=self.cleaned_data["save_as"]
        )
        return job


# The console's history ranges: name -> (window, slot). Per-minute bars for an hour,
# 5-minute bars for a day, hourly bars for a week.
