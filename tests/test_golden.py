"""Golden values: where cnnbench implements a published method, its output against the reference's own formulas,
written out here independently (numpy, scipy, Pillow, colorsys) on fixed images.

Corruptions follow Hendrycks & Dietterich's make_cifar_c.py (CIFAR strengths); where randomness differs (numpy's
generator against torch's), the random draws are shared or statistics are compared, with the tolerance stated.
"""

import colorsys
import io
import math

import numpy as np
import pytest
import torch
from PIL import Image
from scipy import ndimage

from cnnbench.analysis.insight.cka import linear_cka
from cnnbench.analysis.insight.gradcam import grad_cam
from cnnbench.analysis.robustness import corruptions as C
from cnnbench.analysis.robustness.filters import center_zoom, gaussian_blur
from tests.conftest import TinyCNN


def fixed_images(n=3, size=32, seed=7) -> torch.Tensor:
    """Smooth colour gradients plus texture: every pixel value and channel differs, none saturates."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / (size - 1)
    out = []
    for _ in range(n):
        a, b, c = rng.uniform(0.2, 0.8, 3)
        img = np.stack([a * xx + 0.1, b * yy + 0.1, c * (1 - xx * yy) + 0.05], 0)
        img = img + rng.uniform(-0.05, 0.05, img.shape)
        out.append(np.clip(img, 0, 1))
    return torch.from_numpy(np.round(np.stack(out) * 255).astype(np.uint8))


def as_float(x: torch.Tensor) -> np.ndarray:
    return x.numpy().astype(np.float64) / 255


def to_uint8(x: np.ndarray) -> np.ndarray:
    return np.round(np.clip(x, 0, 1) * 255).astype(np.uint8)


# ---- noise: statistics of the reference's draws -------------------------------------------------------------------


@pytest.mark.parametrize("severity", [1, 3, 5])
def test_gaussian_noise_has_the_reference_spread(severity):
    """make_cifar_c: x + N(0, c). On a mid-grey image nothing clips, so the change has mean |N(0, c)| = c sqrt(2/pi)."""
    c = C.CIFAR["gaussian_noise"].severities[severity - 1]
    grey = torch.full((64, 3, 32, 32), 128, dtype=torch.uint8)
    change = as_float(C.corrupt("gaussian_noise", grey, severity)) - 128 / 255
    assert np.abs(change).mean() == pytest.approx(c * math.sqrt(2 / math.pi), rel=0.02)  # 196k draws
    assert change.std() == pytest.approx(c, rel=0.02)


def test_shot_noise_has_the_reference_spread():
    """make_cifar_c: poisson(x c) / c, whose standard deviation is sqrt(x / c)."""
    c = C.CIFAR["shot_noise"].severities[4]
    grey = torch.full((64, 3, 32, 32), 128, dtype=torch.uint8)
    out = as_float(C.corrupt("shot_noise", grey, 5))
    assert out.std() == pytest.approx(math.sqrt((128 / 255) / c), rel=0.03)
    assert out.mean() == pytest.approx(128 / 255, abs=0.005)


def test_impulse_noise_hits_the_reference_share():
    """scikit-image's random_noise('s&p', amount=c): a share c of values set to 0 or 1, half each."""
    c = C.CIFAR["impulse_noise"].severities[4]
    grey = torch.full((64, 3, 32, 32), 128, dtype=torch.uint8)
    out = C.corrupt("impulse_noise", grey, 5).numpy()
    assert (out != 128).mean() == pytest.approx(c, rel=0.05)
    assert (out == 255).sum() / (out != 128).sum() == pytest.approx(0.5, abs=0.03)


# ---- blur: the reference's kernels and loops ----------------------------------------------------------------------


def reference_disk(radius, alias_blur):
    """make_cifar_c's disk(): an aliased disk on a 17x17 grid, then cv2.GaussianBlur with a 3x3 kernel."""
    grid = np.arange(-8, 9) if radius <= 8 else np.arange(-radius, radius + 1)
    xx, yy = np.meshgrid(grid, grid)
    disk = ((xx**2 + yy**2) <= radius**2).astype(np.float64)
    disk /= disk.sum()
    g = np.exp(-0.5 * (np.array([-1.0, 0.0, 1.0]) / alias_blur) ** 2)  # OpenCV's 3-tap Gaussian for sigma
    g /= g.sum()
    return ndimage.correlate(disk, np.outer(g, g), mode="mirror")  # cv2's default border: reflect-101


@pytest.mark.parametrize("severity", [1, 3, 5])
def test_defocus_blur_equals_the_reference(severity):
    """cv2.filter2D(x, -1, disk) per channel, border reflect-101 (scipy's 'mirror')."""
    x = fixed_images()
    kernel = reference_disk(*C.CIFAR["defocus_blur"].severities[severity - 1])
    ref = np.stack([np.stack([ndimage.correlate(ch, kernel, mode="mirror") for ch in img]) for img in as_float(x)])
    ours = C.corrupt("defocus_blur", x, severity).numpy().astype(int)
    assert np.abs(ours - to_uint8(ref).astype(int)).max() <= 1  # rounding of float32 against float64


@pytest.mark.parametrize("severity", [1, 4])
def test_glass_blur_copies_as_the_reference_does(severity):
    """The reference's loop with numpy's view semantics (``x[a], x[b] = x[b], x[a]`` copies x[b] over x[a]),
    fed the same random offsets as cnnbench draws them."""
    sigma, delta, iterations = C.CIFAR["glass_blur"].severities[severity - 1]
    x = fixed_images(n=1)
    g = torch.Generator().manual_seed(0)  # corrupt()'s generator for seed 0
    blurred = gaussian_blur(x.float() / 255, sigma)
    img = np.floor(blurred[0].permute(1, 2, 0).numpy().astype(np.float64) * 255).astype(np.uint8)  # np.uint8(...)
    for _ in range(iterations):
        for h in range(32 - delta, delta, -1):
            for w in range(32 - delta, delta, -1):
                dx, dy = torch.randint(-delta, delta, (2, 1), generator=g)[:, 0].tolist()
                hp, wp = h + dy, w + dx
                img[h, w], img[hp, wp] = img[hp, wp], img[h, w]  # views: a copy, as in make_cifar_c.py
    shuffled = torch.from_numpy(img).permute(2, 0, 1)[None].float() / 255
    ref = gaussian_blur(shuffled, sigma).clamp(0, 1)
    ours = C.corrupt("glass_blur", x, severity)
    assert torch.equal(ours, torch.round(ref * 255).to(torch.uint8))


def test_zoom_blur_averages_the_reference_zooms_including_one():
    """make_cifar_c: out = x + sum over np.arange(1, 1.06, 0.01) of zoom(x); out / (len(zooms) + 1)."""
    x = fixed_images()
    xf = x.float() / 255
    zooms = np.arange(1, 1.06, 0.01)  # numpy's floating point makes these 1.00 ... 1.06: seven zooms
    assert C.CIFAR["zoom_blur"].severities[0] == pytest.approx(tuple(zooms))
    ref = (xf + sum(center_zoom(xf, float(z)) for z in zooms)) / (len(zooms) + 1)
    ref = torch.round(ref.clamp(0, 1) * 255)
    assert (C.corrupt("zoom_blur", x, 1).float() - ref).abs().max() <= 1  # float32 sums in another order


# ---- weather: the reference's formula around a shared random layer ------------------------------------------------


@pytest.mark.parametrize("severity", [1, 5])
def test_fog_follows_the_reference_formula(severity, monkeypatch):
    """make_cifar_c: max = x.max(); x += c0 * plasma; clip(x * max / (max + c0)). The plasma layer is fixed."""
    c0, _ = C.CIFAR["fog"].severities[severity - 1]
    rng = np.random.default_rng(3)
    plasma = rng.uniform(0, 1, (3, 32, 32)).astype(np.float32)
    monkeypatch.setattr(C, "plasma_fractal", lambda n, size, decay, g: torch.from_numpy(plasma[:n]))
    x = fixed_images()
    ref = []
    for img, p in zip(as_float(x), plasma):
        top = img.max()
        ref.append(np.clip((img + c0 * p[None]) * top / (top + c0), 0, 1))
    assert np.abs(C.corrupt("fog", x, severity).numpy().astype(int) - to_uint8(np.stack(ref)).astype(int)).max() <= 1


@pytest.mark.parametrize("severity", [1, 5])
def test_frost_overlays_the_reference_photographs(severity):
    """make_cifar_c: clip(c0 x + c1 crop), the crop 32 x 32 from one of frost1-5 shrunk by 0.2, its corner drawn in
    [0, H - 33]. The draws are replayed from the same generator; the photographs read here with numpy alone."""
    from pathlib import Path

    import cnnbench.analysis.robustness.corruptions as module

    with np.load(Path(module.__file__).with_name("frost_photos.npz")) as z:
        photos = [z[k].astype(np.float64) / 255 for k in sorted(z.files)]
    assert [p.shape[:2] for p in photos] == [(120, 180), (63, 112), (63, 112), (70, 105), (99, 132)]
    x = fixed_images(4)
    got = C.corrupt("frost", x, severity, seed=11)
    g = torch.Generator().manual_seed(11)
    c0, c1 = C.CIFAR["frost"].severities[severity - 1]
    for i, k in enumerate(torch.randint(5, (4,), generator=g).tolist()):
        h, w = photos[k].shape[:2]
        top, left = int(torch.randint(h - 32, (1,), generator=g)), int(torch.randint(w - 32, (1,), generator=g))
        crop = photos[k][top : top + 32, left : left + 32].transpose(2, 0, 1)
        reference = to_uint8(c0 * as_float(x[i]) + c1 * crop).astype(int)
        assert (
            np.abs(got[i].numpy().astype(int) - reference).max() <= 1
        )  # float32 here, float64 there: ties round apart


def test_frost_photographs_have_the_published_brightness():
    """The procedural texture cnnbench used before had mean 0.48 against the photographs' 0.64 (an audit against
    make_cifar_c.py with its real files); the layer drawn now has the photographs' mean, each equally likely."""
    layer = C.frost_layer(4000, 32, 32, 3, torch.Generator().manual_seed(0))
    assert layer.mean().item() == pytest.approx(0.643, abs=0.01)


# ---- digital: exact reference operations --------------------------------------------------------------------------


@pytest.mark.parametrize("severity", [1, 5])
def test_contrast_equals_the_reference(severity):
    """make_cifar_c: means = mean over the image per channel; (x - means) * c + means."""
    c = C.CIFAR["contrast"].severities[severity - 1]
    x = fixed_images()
    xf = as_float(x)
    means = xf.mean(axis=(2, 3), keepdims=True)
    assert (
        np.abs(C.corrupt("contrast", x, severity).numpy().astype(int) - to_uint8((xf - means) * c + means)).max() <= 1
    )


@pytest.mark.parametrize("severity", [1, 5])
def test_brightness_equals_the_reference(severity):
    """make_cifar_c: rgb2hsv, V + c clipped to 1, hsv2rgb (colorsys's conversions, pixel by pixel)."""
    c = C.CIFAR["brightness"].severities[severity - 1]
    x = fixed_images(n=1)
    img = as_float(x)[0].transpose(1, 2, 0)
    ref = np.empty_like(img)
    for i in range(32):
        for j in range(32):
            h, s, v = colorsys.rgb_to_hsv(*img[i, j])
            ref[i, j] = colorsys.hsv_to_rgb(h, s, min(v + c, 1.0))
    ours = C.corrupt("brightness", x, severity)[0].numpy().transpose(1, 2, 0).astype(int)
    assert np.abs(ours - to_uint8(ref).astype(int)).max() <= 1


@pytest.mark.parametrize("severity", [1, 3, 5])
def test_pixelate_equals_pillow_box_resizes(severity):
    """make_cifar_c: resize to int(32 c) and back, both with PIL's BOX filter."""
    c = C.CIFAR["pixelate"].severities[severity - 1]
    x = fixed_images()
    for img, ours in zip(x, C.corrupt("pixelate", x, severity)):
        pil = Image.fromarray(img.permute(1, 2, 0).numpy())
        small = pil.resize((int(32 * c), int(32 * c)), Image.BOX).resize((32, 32), Image.BOX)
        assert np.abs(np.asarray(small).astype(int) - ours.permute(1, 2, 0).numpy().astype(int)).max() <= 1


def test_jpeg_equals_pillow_at_the_reference_quality():
    """make_cifar_c: PIL's JPEG encoder at quality c, decoded again."""
    x = fixed_images()
    quality = C.CIFAR["jpeg_compression"].severities[2]
    for img, ours in zip(x, C.corrupt("jpeg_compression", x, 3)):
        buf = io.BytesIO()
        Image.fromarray(img.permute(1, 2, 0).numpy()).save(buf, "JPEG", quality=quality)
        assert np.array_equal(np.asarray(Image.open(buf)), ours.permute(1, 2, 0).numpy())


# ---- Grad-CAM and CKA -----------------------------------------------------------------------------------------------


def test_grad_cam_reduces_to_cam_for_global_pooling_and_a_linear_head():
    """Selvaraju et al. (2017), Sec. 3.1: after global average pooling and one linear layer, the Grad-CAM weights are
    the class's weights / (H W), so the map is Zhou et al.'s CAM, relu(sum_k w_ck A_k), up to scale."""
    torch.manual_seed(0)
    model = TinyCNN(num_classes=4, in_chans=3, variant="small").eval()
    x = torch.randn(2, 3, 16, 16)
    classes = model(x).argmax(1)  # the predicted classes: their evidence is positive somewhere
    cams = grad_cam(model, "features", x, classes)
    with torch.no_grad():
        acts = model.features(x)  # (2, 16, 4, 4)
        w = model.classifier.weight[classes]  # (2, 16)
        ref = torch.relu((w[:, :, None, None] * acts).sum(1, keepdim=True))
        ref = torch.nn.functional.interpolate(ref, size=(16, 16), mode="bilinear", align_corners=False)[:, 0]
        ref = ref / ref.flatten(1).amax(1).view(-1, 1, 1)
    assert torch.allclose(cams, ref, atol=1e-5)


def test_linear_cka_equals_the_feature_space_formula():
    """Kornblith et al. (2019), eq. (2) for linear kernels: ||Y^T X||_F^2 / (||X^T X||_F ||Y^T Y||_F) on centred
    features; and its invariances (orthogonal transforms, isotropic scaling)."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(50, 20))
    y = x @ rng.normal(size=(20, 30)) + 0.5 * rng.normal(size=(50, 30))
    xc, yc = x - x.mean(0), y - y.mean(0)
    ref = np.linalg.norm(yc.T @ xc) ** 2 / (np.linalg.norm(xc.T @ xc) * np.linalg.norm(yc.T @ yc))
    assert linear_cka(torch.from_numpy(x), torch.from_numpy(y)) == pytest.approx(ref, rel=1e-10)
    q, _ = np.linalg.qr(rng.normal(size=(20, 20)))
    assert linear_cka(torch.from_numpy(x), torch.from_numpy(3 * x @ q)) == pytest.approx(1.0, rel=1e-10)
