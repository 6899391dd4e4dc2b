import numpy as np
import pytest
import torch
from torch import nn

from auditkit.errors import AuditkitError
from auditkit.imagefolder import ImageEntry
from auditkit.marking.augment import apply, draw_params
from auditkit.marking.optimize import MarkingParams, mark_batch, psnr_db
from auditkit.marking.release import release_path_for, select_images


def linear_features(dim: int = 16, channels: int = 3, size: int = 12) -> nn.Module:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(channels, 8, 3, padding=1), nn.Tanh(), nn.Flatten(), nn.Linear(8 * size * size, dim))
    return net.requires_grad_(False)


@pytest.mark.parametrize(("augment", "momentum"), [("none", 0.0), ("center", 0.0), ("random", 0.0), ("shift", 0.0), ("none", 0.5),
                                                  ("random", 0.5)])
def test_mark_batch_respects_every_constraint(augment: str, momentum: float) -> None:
    net = linear_features()
    images = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (6, 3, 12, 12))).float()
    images[0] = 255.0  # saturated image: the valid-range clamp must hold
    carriers = nn.functional.normalize(torch.randn(6, 16, generator=torch.Generator().manual_seed(1)), dim=1)
    params = MarkingParams(radius=6, psnr=38, steps=15, lr=1.0, augment=augment, momentum=momentum)
    result = mark_batch(net, images, carriers, params, [np.random.default_rng(i) for i in range(6)])
    delta = result.pixels.float() - images
    assert result.pixels.dtype == torch.uint8 and result.pixels.shape == images.shape
    assert delta.abs().max() <= params.radius
    assert np.all(result.psnr >= params.psnr)
    np.testing.assert_allclose(result.psnr, psnr_db(delta).numpy())
    if augment == "none":  # deterministic objective: every image moves along its carrier
        assert np.all(result.shift > 0)
    else:
        assert result.shift.mean() > 0


def test_grayscale_images_keep_one_channel() -> None:
    net = linear_features()
    images = torch.full((2, 1, 12, 12), 128.0)
    carriers = nn.functional.normalize(torch.randn(2, 16), dim=1)
    result = mark_batch(net, images, carriers, MarkingParams(steps=5, augment="none"), [np.random.default_rng(0)] * 2)
    assert result.pixels.shape == (2, 1, 12, 12)


def test_images_are_independent_of_their_batch() -> None:
    """An image's mark does not depend on its batch-mates (needed for exact --resume)."""
    net = linear_features()
    images = torch.from_numpy(np.random.default_rng(3).integers(0, 256, (4, 3, 12, 12))).float()
    carriers = nn.functional.normalize(torch.randn(4, 16, generator=torch.Generator().manual_seed(2)), dim=1)
    params = MarkingParams(steps=12, augment="random")
    together = mark_batch(net, images, carriers, params, [np.random.default_rng([7, i]) for i in range(4)])
    alone = mark_batch(net, images[2:3], carriers[2:3], params, [np.random.default_rng([7, 2])])
    assert torch.equal(together.pixels[2:3], alone.pixels)


def test_augmentations_keep_shape_and_gradients() -> None:
    x = torch.rand(3, 3, 10, 14, requires_grad=True)
    out = apply(x, draw_params("random", [np.random.default_rng(i) for i in range(3)]))
    assert out.shape == x.shape
    out.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert apply(x, draw_params("none", [np.random.default_rng(0)])) is x


def test_shift_augmentation_translates_by_whole_pixels_within_bounds() -> None:
    x = torch.rand(1, 3, 16, 16)
    one_pixel = np.array([[1.0, 1.0, 2 / 16, 0.0, 1.0]])  # 1 px = 2/W in normalised coordinates
    torch.testing.assert_close(apply(x, one_pixel)[..., :-1], x[..., 1:])
    params = draw_params("shift", [np.random.default_rng(i) for i in range(200)])
    assert np.all(params[:, :2] == 1.0) and np.abs(params[:, 2:4]).max() <= 2 / 16
    assert set(params[:, 4]) == {-1.0, 1.0}


def test_selection_is_per_class_seeded_and_at_least_one() -> None:
    images = [ImageEntry(f"c{c}/{i}.png", c) for c in range(3) for i in range(10 if c else 2)]
    chosen = select_images(images, 3, 0.2, seed=5)
    per_class = np.bincount([images[i].class_index for i in chosen], minlength=3)
    assert per_class.tolist() == [1, 2, 2]  # round(0.4) = 0 -> at least one
    assert chosen == select_images(images, 3, 0.2, seed=5)
    assert chosen != select_images(images, 3, 0.2, seed=6)
    assert select_images(images, 3, 0.0, seed=5) == []
    with pytest.raises(AuditkitError):
        select_images(images, 3, 1.5, seed=5)


def test_release_paths_are_png() -> None:
    assert release_path_for("cat/x.jpg") == "cat/x.png"
    assert release_path_for("cat/sub/y.png") == "cat/sub/y.png"


@pytest.mark.parametrize("mode", ["L", "RGB", "RGBA"])
def test_png_round_trip_keeps_mode_size_and_alpha(tmp_path, mode: str) -> None:
    from PIL import Image

    from auditkit.imagefolder import encode_png, load_image

    channels = {"L": 1, "RGB": 3, "RGBA": 4}[mode]
    array = np.random.default_rng(0).integers(0, 256, (9, 7, channels), dtype=np.uint8).squeeze()
    Image.fromarray(array, mode=mode).save(tmp_path / "x.png")
    loaded = load_image(tmp_path / "x.png")
    assert loaded.pixels.shape == ((1 if mode == "L" else 3), 9, 7)
    (tmp_path / "y.png").write_bytes(encode_png(loaded.pixels, loaded.alpha, loaded.mode))
    again = Image.open(tmp_path / "y.png")
    assert again.mode == mode and again.size == (7, 9)
    assert np.array_equal(np.asarray(again), array)


def test_unsupported_and_corrupt_images_are_refused(tmp_path) -> None:
    from PIL import Image

    from auditkit.imagefolder import load_image

    Image.new("I;16", (4, 4)).save(tmp_path / "deep.png")
    with pytest.raises(AuditkitError, match="not supported"):
        load_image(tmp_path / "deep.png")
    (tmp_path / "bad.png").write_bytes(b"\x89PNG garbage")
    with pytest.raises(AuditkitError, match="cannot read"):
        load_image(tmp_path / "bad.png")
