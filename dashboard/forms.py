from django import forms
from django.conf import settings
from django.core.exceptions import ValidationError
from django.template.defaultfilters import filesizeformat

from jobs.kinds import thumbnails


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
