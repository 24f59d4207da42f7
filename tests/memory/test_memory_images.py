"""Images people send: checked with Pillow, kept content-addressed, swept when no row names them."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path

import pytest

from memory.images import ImageError, ImageStore, check_image, referenced
from memory.service import Memory
from memory.types import Scope
from tests.memory.imagefiles import make_jpeg, make_noisy_jpeg, make_png, png_bomb

MB = 1_000_000


def test_a_jpeg_and_a_png_are_accepted_with_their_type_and_size() -> None:
    jpeg = check_image(make_jpeg(64, 48), MB, 10 * MB)
    assert (jpeg.media_type, jpeg.width, jpeg.height) == ("image/jpeg", 64, 48)
    png = check_image(make_png(30, 20), MB, 10 * MB)
    assert (png.media_type, png.width, png.height) == ("image/png", 30, 20)
    assert png.sha256 == hashlib.sha256(png.data).hexdigest()


@pytest.mark.parametrize(
    ("data", "max_bytes", "max_pixels", "says"),
    [
        (b"%PDF-1.4 this is not a picture", MB, 10 * MB, "not an image I can read"),
        (make_jpeg(64, 48)[:200], MB, 10 * MB, "not an image I can read"),  # header cut short
        (make_noisy_jpeg()[:-2000], MB, 10 * MB, "not an image I can read"),  # data cut short
        (make_jpeg(64, 48), 500, 10 * MB, "over the 0.0005 MB limit for images"),
        (make_png(2000, 1000), 10 * MB, 1 * MB, "2000×1000 pixels, over the limit of 1 million"),
        (png_bomb(), MB, 10**12, "decompression bomb"),
    ],
)
def test_bad_images_are_refused_with_the_reason(
    data: bytes, max_bytes: int, max_pixels: int, says: str
) -> None:
    with pytest.raises(ImageError) as caught:
        check_image(data, max_bytes, max_pixels)
    assert says in str(caught.value)
    assert caught.value.fix


def test_a_cameras_multi_picture_jpeg_is_taken_as_a_jpeg() -> None:
    import io

    from PIL import Image

    out = io.BytesIO()
    first, second = Image.new("RGB", (16, 12), (1, 2, 3)), Image.new("RGB", (16, 12), (4, 5, 6))
    first.save(out, "MPO", save_all=True, append_images=[second])
    image = check_image(out.getvalue(), MB, MB)
    assert (image.media_type, image.width, image.height) == ("image/jpeg", 16, 12)


def test_a_bmp_is_an_image_but_not_one_a_model_takes() -> None:
    import io

    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (8, 8)).save(out, "BMP")
    with pytest.raises(ImageError, match="BMP images are not supported"):
        check_image(out.getvalue(), MB, MB)


def test_the_same_image_is_kept_once_under_its_hash(tmp_path: Path) -> None:
    store = ImageStore(tmp_path / "images")
    image = check_image(make_jpeg(), MB, MB)
    first, again = store.put(image), store.put(image)
    assert first == again == hashlib.sha256(image.data).hexdigest()
    [path] = store.files()
    assert path.name == f"{first}.jpg" and path.read_bytes() == image.data
    assert [p.name for p in (tmp_path / "images").iterdir()] == [path.name]  # no temporary left


def test_sweep_deletes_only_images_no_memory_names(tmp_path: Path, make_memory) -> None:  # type: ignore[no-untyped-def]
    memory: Memory = make_memory()
    store = ImageStore(tmp_path / "images")
    kept = store.put(check_image(make_jpeg(color=(1, 2, 3)), MB, MB))
    gone = store.put(check_image(make_png(color=(4, 5, 6)), MB, MB))
    busy = store.put(check_image(make_png(color=(7, 8, 9)), MB, MB))
    store.release([kept, gone])  # ``busy`` is still being stored: no row names it yet

    async def turns() -> tuple[int, int]:
        a, _ = await memory.store_turn(1, 1, "user", "a red square", meta={"photos": [kept]})
        b, _ = await memory.store_turn(1, 1, "user", "a blue square", meta={"photos": [gone]})
        return a, b

    asyncio.run(turns())
    assert referenced(memory.db) == {kept, gone}
    with memory.db.read() as conn:
        [(row_id,)] = conn.execute(
            "SELECT id FROM memories WHERE text = 'a blue square'"
        ).fetchall()
    assert memory.forget_sync(row_id, Scope(1, 1))
    assert store.sweep(memory.db) == 1
    names = {p.name.split(".")[0] for p in store.files()}
    assert names == {kept, busy}
    store.release([busy])
    assert store.sweep(memory.db) == 1 and {p.name.split(".")[0] for p in store.files()} == {kept}
