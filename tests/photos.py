"""Made-up photos for tests and benchmarks: a plain module (no Django), so a bench imports it."""

import io
import random

from PIL import Image, ImageChops, ImageDraw


def noisy_photo(size: tuple[int, int], quality: int = 85) -> bytes:
    """A JPEG with a photo's detail, noise over a gradient, so that it and its thumbnails weigh
    what real ones do (~0.2 bytes a pixel at quality 60)."""
    noise = Image.effect_noise(size, 40).convert("RGB")
    gradient = Image.linear_gradient("L").resize(size).convert("RGB")
    buffer = io.BytesIO()
    Image.blend(noise, gradient, 0.5).save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


def subject_photo(
    size: tuple[int, int],
    centre: tuple[int, int],
    radius: int,
    texture: float = 0.08,
    seed: int = 7,
    coloured: bool = False,
) -> Image.Image:
    """A softly graded background, textured by `texture` of noise (of every colour, if
    `coloured`), with one detailed red subject (a disc with darker marks) at `centre`: where a
    crop should look."""
    rng = random.Random(seed)  # noqa: S311 - test data
    img = Image.linear_gradient("L").resize(size).convert("RGB")
    img = Image.blend(img, Image.new("RGB", size, (90, 110, 140)), 0.6)
    channels = [Image.effect_noise(size, 40) for _ in range(3 if coloured else 1)]
    noise = Image.merge("RGB", channels) if coloured else channels[0].convert("RGB")
    img = Image.blend(img, noise, texture)
    draw = ImageDraw.Draw(img)
    x, y = centre
    draw.ellipse((x - radius, y - radius, x + radius, y + radius), fill=(220, 30, 30))
    for _ in range(radius * 4):
        px = x + rng.randint(-radius // 2, radius // 2)
        py = y + rng.randint(-radius // 2, radius // 2)
        draw.point((px, py), fill=(150, 0, 0))
    return img


def red_pixels(img: Image.Image) -> int:
    """How much of subject_photo's subject an image shows, in pixels."""
    red, green, blue = img.convert("RGB").split()
    # Counted by masks, which every Pillow pyproject.toml allows has (not get_flattened_data()).
    mask = ImageChops.multiply(
        red.point(lambda value: 255 if value > 120 else 0),
        ImageChops.multiply(
            green.point(lambda value: 255 if value < 80 else 0),
            blue.point(lambda value: 255 if value < 80 else 0),
        ),
    )
    return mask.histogram()[255]
