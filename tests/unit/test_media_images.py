"""mr.media images: Pillow decodes PNG, JPEG, WebP and GIF (first frame) to upright RGB on white,
and every hostile input is a 400 naming its field, refused before any pixel is decoded where the
header already shows it is too big. Images are generated here; llama.cpp's own sample covers a
real camera JPEG."""

from __future__ import annotations

import base64
import io
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage
from PIL import ImageSequence

from mr.errors import InvalidArgumentError
from mr.media import Image, MediaLimits, MediaSource, decode_image, load, load_all
from support.media import bomb_png

FIELD = "messages[0].content[1]"
LIMITS = MediaLimits()
VENDOR_JPEG = Path(__file__).resolve().parents[2] / "vendor" / "llama.cpp" / "tools" / "mtmd" / "test-1.jpeg"
RED, GREEN, BLUE, WHITE = (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255)


def encode(img: PILImage.Image, fmt: str, **options: object) -> bytes:
    out = io.BytesIO()
    img.save(out, fmt, **options)
    return out.getvalue()


def noise(width: int = 48, height: int = 32, seed: int = 0) -> PILImage.Image:
    rng = np.random.default_rng(seed)
    return PILImage.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


def pixels(image: Image) -> np.ndarray:
    return np.frombuffer(image.rgb, dtype=np.uint8).reshape(image.height, image.width, 3)


def refused(data: bytes, limits: MediaLimits = LIMITS) -> InvalidArgumentError:
    with pytest.raises(InvalidArgumentError) as caught:
        decode_image(data, FIELD, limits)
    error = caught.value
    assert error.param == FIELD and str(error).startswith(f"{FIELD}: "), str(error)
    assert error.http_status == 400
    return error


# Formats


def test_png_decodes_to_the_exact_pixels() -> None:
    img = noise()
    image = decode_image(encode(img, "PNG"), FIELD, LIMITS)
    assert (image.width, image.height) == (48, 32)
    assert len(image.rgb) == 48 * 32 * 3
    assert np.array_equal(pixels(image), np.asarray(img))


def test_lossless_webp_decodes_to_the_exact_pixels() -> None:
    img = noise()
    image = decode_image(encode(img, "WEBP", lossless=True), FIELD, LIMITS)
    assert np.array_equal(pixels(image), np.asarray(img))


def test_jpeg_decodes_close_to_the_pixels() -> None:
    img = PILImage.new("RGB", (64, 32), BLUE)
    img.paste(RED, (0, 0, 32, 32))
    image = decode_image(encode(img, "JPEG", quality=95), FIELD, LIMITS)
    assert (image.width, image.height) == (64, 32)
    got = pixels(image).astype(int)
    assert np.abs(got[16, 8] - RED).max() < 12 and np.abs(got[16, 56] - BLUE).max() < 12


def test_gif_decodes_its_palette_to_rgb() -> None:
    img = PILImage.new("RGB", (20, 10), GREEN)
    image = decode_image(encode(img, "GIF"), FIELD, LIMITS)
    assert (image.width, image.height) == (20, 10)
    assert tuple(pixels(image)[5, 5]) == GREEN


def test_an_animated_gif_gives_its_first_frame() -> None:
    frames = [PILImage.new("RGB", (16, 16), colour) for colour in (RED, GREEN, BLUE)]
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    assert len(ImageSequence.all_frames(PILImage.open(io.BytesIO(data)))) == 3  # really animated
    image = decode_image(data, FIELD, LIMITS)
    assert (image.width, image.height) == (16, 16)
    assert {tuple(p) for p in pixels(image).reshape(-1, 3)} == {RED}


def test_transparent_pixels_are_composited_on_white() -> None:
    rgba = PILImage.new("RGBA", (3, 1))
    rgba.putpixel((0, 0), (255, 0, 0, 0))  # fully transparent red: white
    rgba.putpixel((1, 0), (0, 0, 255, 255))  # opaque blue: blue
    rgba.putpixel((2, 0), (0, 0, 0, 128))  # half transparent black: mid grey
    for data in (encode(rgba, "PNG"), encode(rgba, "WEBP", lossless=True)):
        row = pixels(decode_image(data, FIELD, LIMITS))[0]
        assert tuple(row[0]) == WHITE and tuple(row[1]) == BLUE
        assert all(120 <= v <= 135 for v in row[2])


def test_a_palette_image_with_a_transparent_index_is_white_there() -> None:
    img = PILImage.new("P", (2, 1))
    img.putpalette([255, 0, 0, 0, 255, 0] + [0] * 762)
    img.putpixel((0, 0), 0)
    img.putpixel((1, 0), 1)
    for fmt in ("PNG", "GIF"):
        row = pixels(decode_image(encode(img, fmt, transparency=0), FIELD, LIMITS))[0]
        assert tuple(row[0]) == WHITE and tuple(row[1]) == GREEN, fmt


def test_sixteen_bit_grey_is_scaled_not_clipped() -> None:
    grey = PILImage.fromarray(np.full((4, 4), 0x8000, dtype=np.uint16))
    assert grey.mode.startswith("I;16")
    image = decode_image(encode(grey, "PNG"), FIELD, LIMITS)
    assert tuple(pixels(image)[0, 0]) == (128, 128, 128)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP"])
def test_exif_orientation_turns_the_image_upright(fmt: str) -> None:
    # Stored 64x32, left half red; orientation 6 says "turn 90 degrees clockwise to view": the
    # upright image is 32x64 with the red half on top (how phones store portrait photos).
    img = PILImage.new("RGB", (64, 32), BLUE)
    img.paste(RED, (0, 0, 32, 32))
    exif = PILImage.Exif()
    exif[0x0112] = 6
    options: dict[str, object] = {"lossless": True} if fmt == "WEBP" else {}
    image = decode_image(encode(img, fmt, exif=exif, **options), FIELD, LIMITS)
    assert (image.width, image.height) == (32, 64)
    got = pixels(image).astype(int)
    assert np.abs(got[8, 16] - RED).max() < 12 and np.abs(got[56, 16] - BLUE).max() < 12


def test_llama_cpps_sample_jpeg_decodes() -> None:
    if not VENDOR_JPEG.is_file():
        pytest.skip("vendor/llama.cpp is not fetched")
    data = VENDOR_JPEG.read_bytes()
    with PILImage.open(VENDOR_JPEG) as reference:
        reference.load()
        width, height = reference.size
    image = decode_image(data, FIELD, LIMITS)
    assert {image.width, image.height} == {width, height}  # upright: EXIF may swap them
    assert len(image.rgb) == image.width * image.height * 3
    assert pixels(image).std() > 10  # a photo, not a blank


# Digests


def test_the_same_pixels_in_png_and_lossless_webp_have_the_same_digest() -> None:
    img = noise()
    png = decode_image(encode(img, "PNG"), FIELD, LIMITS)
    webp = decode_image(encode(img, "WEBP", lossless=True), FIELD, LIMITS)
    assert png.digest == webp.digest and len(png.digest) == 64


def test_different_images_have_different_digests() -> None:
    one = decode_image(encode(noise(seed=1), "PNG"), FIELD, LIMITS)
    two = decode_image(encode(noise(seed=2), "PNG"), FIELD, LIMITS)
    assert one.digest != two.digest
    # the same bytes in another shape are another picture
    wide = decode_image(encode(PILImage.new("RGB", (4, 2), RED), "PNG"), FIELD, LIMITS)
    tall = decode_image(encode(PILImage.new("RGB", (2, 4), RED), "PNG"), FIELD, LIMITS)
    assert wide.rgb == tall.rgb and wide.digest != tall.digest


# Hostile input


def test_a_header_over_the_pixel_bound_is_refused_before_decoding() -> None:
    # 9000x8000 = 72M pixels: over mr's 64M bound, under Pillow's own (89M), so mr's check is
    # what refuses it. Decoding would have failed on the empty IDAT instead ("truncated").
    error = refused(bomb_png(9000, 8000))
    assert str(error) == f"{FIELD}: the image is 9000x8000 pixels, more than the 67108864 allowed"


def test_the_pixel_bound_is_the_requests_own() -> None:
    small = MediaLimits(max_pixels=100 * 100)
    assert decode_image(encode(noise(100, 100), "PNG"), FIELD, small).width == 100
    error = refused(encode(noise(101, 100), "PNG"), small)
    assert "101x100 pixels, more than the 10000 allowed" in str(error)


def test_a_png_claiming_60000_squared_is_refused_fast_in_little_memory() -> None:
    # In a fresh interpreter, so the peak memory measured is this call's alone.
    data = bomb_png(60000, 60000)
    assert len(data) < 100
    script = textwrap.dedent(f"""
        import resource, time
        from mr.errors import InvalidArgumentError
        from mr.media import MediaLimits, decode_image
        data = {data!r}
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        start = time.perf_counter()
        try:
            decode_image(data, "f", MediaLimits())
        except InvalidArgumentError as error:
            message = str(error)
        else:
            message = "decoded"
        seconds = time.perf_counter() - start
        grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
        print(repr((message, seconds, grown)))
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    message, seconds, grown_kib = eval(done.stdout.strip().splitlines()[-1])
    assert message.startswith("f: the image is too large to decode") and "pixels" in message
    assert seconds < 0.5
    assert grown_kib < 20 * 1024  # the image would be 10.8 GB


def test_a_truncated_image_is_refused() -> None:
    for fmt in ("PNG", "JPEG", "GIF", "WEBP"):
        data = encode(noise(), fmt)
        for cut in (len(data) // 2, 24):
            error = refused(data[:cut])
            assert "corrupt or truncated" in str(error) or "is not a" in str(error), (fmt, cut, str(error))


def test_a_corrupt_image_body_is_refused() -> None:
    data = bytearray(encode(noise(), "PNG"))
    data[60:200] = bytes(140)  # the IDAT's compressed stream, zeroed
    assert "corrupt or truncated" in str(refused(bytes(data)))


@pytest.mark.parametrize("fmt", ["BMP", "TIFF", "ICO", "PPM"])
def test_formats_beyond_the_four_are_refused(fmt: str) -> None:
    data = encode(noise(16, 16), fmt)
    assert PILImage.open(io.BytesIO(data)).size == (16, 16)  # Pillow itself would have decoded it
    error = refused(data)
    assert "PNG, JPEG, WebP" in str(error)
    if fmt != "PPM":
        assert f"the image is {fmt}" in str(error)


def test_bytes_that_are_no_image_are_refused() -> None:
    assert "is not a PNG, JPEG, WebP or GIF image" in str(refused(b"hello, I am not a picture"))
    assert "empty" in str(refused(b""))


def test_an_image_over_the_byte_bound_is_refused() -> None:
    data = encode(noise(), "PNG")
    error = refused(data, MediaLimits(max_bytes=len(data) - 1))
    assert f"the image is {len(data)} bytes, more than the {len(data) - 1} bytes allowed" in str(error)


# load / load_all for images


def test_load_decodes_an_image_source_and_its_data_url() -> None:
    data = encode(noise(), "PNG")
    inline = load(MediaSource(kind="image", field=FIELD, data=data, format="image/png"), LIMITS)
    url = "data:image/png;base64," + base64.b64encode(data).decode()
    from_url = load(MediaSource(kind="image", field=FIELD, url=url), LIMITS)
    assert isinstance(inline, Image) and inline == from_url


def test_load_all_refuses_too_many_items_naming_the_first_past_the_bound() -> None:
    data = encode(noise(8, 8), "PNG")
    sources = [MediaSource(kind="image", field=f"messages[0].content[{i}]", data=data) for i in range(4)]
    assert len(load_all(sources, MediaLimits(max_items=4))) == 4
    with pytest.raises(InvalidArgumentError) as caught:
        load_all(sources, MediaLimits(max_items=2))
    assert caught.value.param == "messages[0].content[2]"
    assert str(caught.value) == ("messages[0].content[2]: the request has 4 images and audio clips, "
                                 "more than the 2 allowed")


def test_a_source_with_neither_data_nor_url_is_refused() -> None:
    with pytest.raises(InvalidArgumentError) as caught:
        load(MediaSource(kind="image", field=FIELD), LIMITS)
    assert caught.value.param == FIELD


def test_decoding_a_large_image_is_quick_enough() -> None:
    data = encode(noise(2048, 2048), "PNG", compress_level=1)
    start = time.perf_counter()
    image = decode_image(data, FIELD, LIMITS)
    assert image.width == 2048 and time.perf_counter() - start < 5


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_pillows_own_bomb_bound_holds_when_the_requests_is_higher() -> None:
    # Between Pillow's bound (89M pixels) and twice it Pillow only warns: mr refuses there itself.
    assert PILImage.MAX_IMAGE_PIXELS is not None
    error = refused(bomb_png(10000, 10000), MediaLimits(max_pixels=10**9))
    assert str(error) == (f"{FIELD}: the image is 10000x10000 pixels, more than the "
                          f"{PILImage.MAX_IMAGE_PIXELS} allowed")
