"""Made-up photos for tests and benchmarks: a plain module (no Django), so a bench imports it."""

import io

from PIL import Image


def noisy_photo(size: tuple[int, int], quality: int = 85) -> bytes:
    """A JPEG with a photo's detail, noise over a gradient, so that it and its thumbnails weigh
    what real ones do (~0.2 bytes a pixel at quality 60)."""
    noise = Image.effect_noise(size, 40).convert("RGB")
    gradient = Image.linear_gradient("L").resize(size).convert("RGB")
    buffer = io.BytesIO()
    Image.blend(noise, gradient, 0.5).save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()
