"""The submission's form, shared by the upload page and the API: every check a job's files and
output choices pass before anything is stored."""

import re

from django import forms
from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.forms.utils import ErrorDict

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
    ("smart", "Fill the box, keep the subject"),
    ("pad", "Pad to the box"),
]


# The settings of a job, as the form takes them: remembered as a person's last and kept in
# presets (jobs.models.Preset).
CHOICE_FIELDS = ("sizes", "custom_sizes", "fit", "format", "quality", "background", "opaque")
SIZE_FIELDS = frozenset({"sizes", "custom_sizes"})
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
        help_text="Fit keeps the whole image; fill crops its centre to exactly the box, and "
        "keep the subject crops around what stands out (detail, colour, faces) instead; pad "
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

    def __init__(
        self,
        data=None,
        files=None,
        *,
        owner: AbstractBaseUser | None = None,
        fallback: dict | None = None,
        refusal: str = "",
        **kwargs,
    ):
        """What the request leaves out comes from the preset it names, then from `fallback`
        (a re-run through the API: the job's own settings), then the fields' defaults. A
        `refusal` (over the person's submit rate) refuses it before anything is checked."""
        self.owner = owner
        self.refusal = refusal
        self.missing_preset = ""
        if data is not None:
            name = data.get("preset", "").strip()
            chosen = Preset.objects.filter(owner=owner, name=name).first() if name else None
            if name and chosen is None:
                self.missing_preset = name
            # The two size fields are one choice: a request that sends either sends its sizes.
            sends_sizes = not SIZE_FIELDS.isdisjoint(data)
            data = data.copy()
            for choices in (chosen.choices if chosen else {}, fallback or {}):
                for field, value in choices.items():
                    sent = field in data or (field in SIZE_FIELDS and sends_sizes)
                    if field in CHOICE_FIELDS and not sent:
                        data.setlist(field, value if isinstance(value, list) else [value])
        super().__init__(data, files, **kwargs)
        presets = settings.PARROTER_DEFAULT_SIZES
        if "images" in self.fields:  # a re-run's images are the job's own
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

    def full_clean(self):
        if not self.refusal:
            super().full_clean()
            return
        self._errors = ErrorDict()
        self.cleaned_data = {}
        self.add_error(None, ValidationError(self.refusal, code="rate"))

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

    def _post_clean(self):
        # Last, once everything else holds: only a job that would be started counts against
        # today's images. A form with no owner (checking files alone) has no quota to count.
        if not self.errors and self.owner is not None:
            refusal = services.quota_refusal(owner=self.owner, images=len(self.images_to_start))
            if refusal:
                self.add_error(None, ValidationError(refusal, code="quota"))

    @property
    def images_to_start(self) -> list:
        return self.accepted

    @property
    def refused_for_now(self) -> bool:
        """Refused for the person's rate or quota, not for what they sent (429, not 400)."""
        return any(error.code in ("rate", "quota") for error in self.non_field_errors().as_data())

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
        last (and as a preset, if named); the pages and the API all call it."""
        job = self.queue()
        services.remember_choices(
            owner=self.owner, choices=self.choices(), save_as=self.cleaned_data["save_as"]
        )
        return job

    def queue(self) -> Job:
        return services.submit_job(
            owner=self.owner,
            uploads=self.accepted,
            boxes=self.cleaned_data["boxes"],
            output=self.output(),
            refused=self.refused,
        )


class RerunJobForm(ThumbnailJobForm):
    """A finished job made again from its stored images with new settings, as a new job linked
    to it (the job page and the API): every image or only those that failed, each failed one
    replaced by a new file if one is given, each with the point a crop keeps if one is given."""

    images = None  # the job's own stored images
    only_failed = forms.BooleanField(required=False, label="Only the images that failed")

    def __init__(self, data=None, files=None, *, job: Job, sources: list[dict], **kwargs):
        """`sources`: the job's images as selectors.rerun_images gives them."""
        super().__init__(data, files, owner=job.owner, **kwargs)
        self.job = job
        self.sources = sources
        for image in sources:
            index = image["index"]
            self.fields[f"focus_{index}"] = forms.CharField(
                required=False,
                max_length=20,
                label=f"Focus of {image['name']}",
                widget=forms.TextInput(attrs={"placeholder": "centre", "class": "focus"}),
            )
            if image["failed"]:
                self.fields[f"replace_{index}"] = forms.FileField(
                    required=False,
                    label=f"Replace {image['name']}",
                    widget=forms.FileInput(attrs={"accept": "image/*"}),
                )

    def clean(self):
        cleaned = super().clean()
        chosen = [
            image for image in self.sources if image["failed"] or not cleaned.get("only_failed")
        ]
        if not chosen:
            self.add_error(None, "None of this job's images failed.")
        budget = thumbnails.CheckBudget(settings.PARROTER_UPLOAD_CHECK_SECONDS)
        self.chosen: list[services.Upload | services.StoredImage] = []
        for image in chosen:
            focus = self._focus(image["index"])
            replacement = cleaned.get(f"replace_{image['index']}")
            if not replacement:
                self.chosen.append(services.StoredImage(image["file"], image["name"], focus))
                continue
            try:
                info = self._inspect(replacement, budget)
            except ValidationError as exc:
                self.add_error(f"replace_{image['index']}", exc)
            else:
                self.chosen.append(
                    services.Upload(replacement, replacement.name, info.extension, focus)
                )
        return cleaned

    def _focus(self, index: int) -> tuple[float, float] | None:
        """'30, 40': 30 % across and 40 % down the image; empty: the fit mode decides."""
        text = self.cleaned_data.get(f"focus_{index}", "").strip()
        if not text:
            return None
        match = re.fullmatch(r"(\d{1,3}(?:\.\d+)?)\s*%?\s*,\s*(\d{1,3}(?:\.\d+)?)\s*%?", text)
        if match is None or not all(0 <= float(part) <= 100 for part in match.groups()):
            self.add_error(
                f"focus_{index}",
                "Give the focus as two percentages, across then down: 30, 40 for a point "
                "30 % from the left and 40 % from the top.",
            )
            return None
        return (float(match[1]) / 100, float(match[2]) / 100)

    @property
    def images_to_start(self) -> list:
        return self.chosen

    def queue(self) -> Job:
        return services.rerun_job(
            job=self.job, images=self.chosen, boxes=self.cleaned_data["boxes"], output=self.output()
        )


# The console's history ranges: name -> (window, slot). Per-minute bars for an hour,
# 5-minute bars for a day, hourly bars for a week.
