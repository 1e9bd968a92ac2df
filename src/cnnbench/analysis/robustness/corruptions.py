"""Common corruptions, generated on whole batches of tensors: the 15 of CIFAR-10-C and an MNIST-C-style set.

CIFAR-10-C: Hendrycks & Dietterich, "Benchmarking Neural Network Robustness to Common Corruptions and
Perturbations" (ICLR 2019), with the CIFAR strengths of their generator (make_cifar_c.py), not the ImageNet ones.
Each corruption is a function ``fn(x, c, g)`` of a float batch (N, C, H, W) in [0, 1], one severity's parameters
``c`` from its table and a torch.Generator; ``corrupt`` wraps it for uint8 images and a seed.

Substitutes, where the generator needs what cannot be had offline (said in every result, SUBSTITUTES):
- motion_blur and snow's streaks: ImageMagick's motion blur, rebuilt as one-sided Gaussian line kernels.
- frost is not a substitute: it overlays crops of the generator's own frost photographs (shipped shrunk as it
  shrinks them, frost_photos.npz; Apache License 2.0, from the imagecorruptions package).

The digit set follows MNIST-C (Mu & Gilmer, 2019): its corruptions at five severities, the strongest near
MNIST-C's single setting.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ...errors import ConfigError, did_you_mean
from .filters import (
    box_resize,
    center_zoom,
    disk_kernel,
    filter_per_image,
    gaussian_blur,
    grayscale,
    motion_kernels,
    plasma_fractal,
)

Fn = Callable[[torch.Tensor, object, torch.Generator], torch.Tensor]


@dataclass(frozen=True)
class Corruption:
    name: str
    family: str  # noise | blur | weather | digital | geometric | occlusion
    severities: tuple  # parameters of severities 1..5, as the generator's table
    fn: Fn


CIFAR: dict[str, Corruption] = {}
DIGITS: dict[str, Corruption] = {}
SUBSTITUTES = {
    "motion_blur": "ImageMagick's motion blur rebuilt as one-sided Gaussian line kernels",
    "snow": "snow streaks blurred with the rebuilt motion blur (ImageMagick in the original)",
}


def register(table: dict, family: str, severities: tuple):
    def wrap(fn: Fn) -> Fn:
        name = fn.__name__.removeprefix("digit_")
        if name in table:
            raise ValueError(f"corruption {name!r} registered twice")
        table[name] = Corruption(name, family, severities, fn)
        return fn

    return wrap


def uniform(g: torch.Generator, shape, low: float, high: float) -> torch.Tensor:
    return torch.rand(shape, generator=g) * (high - low) + low


# ---- CIFAR-10-C: noise -------------------------------------------------------------------------------------------


@register(CIFAR, "noise", (0.04, 0.06, 0.08, 0.09, 0.10))
def gaussian_noise(x, c, g):
    return x + torch.randn(x.shape, generator=g) * c


@register(CIFAR, "noise", (500, 250, 100, 75, 50))
def shot_noise(x, c, g):
    return torch.poisson(x * c, generator=g) / c


@register(CIFAR, "noise", (0.01, 0.02, 0.03, 0.05, 0.07))
def impulse_noise(x, c, g):
    """Salt and pepper on a share c of the values (scikit-image's random_noise 's&p', half salt)."""
    hit = torch.rand(x.shape, generator=g) < c
    salt = torch.rand(x.shape, generator=g) < 0.5
    return torch.where(hit, salt.to(x.dtype), x)


# ---- blur -------------------------------------------------------------------------------------------------------


@register(CIFAR, "blur", ((0.3, 0.4), (0.4, 0.5), (0.5, 0.6), (1, 0.2), (1.5, 0.1)))
def defocus_blur(x, c, g):
    return filter_per_image(x, disk_kernel(*c), mode="reflect")


@register(CIFAR, "blur", ((0.05, 1, 1), (0.25, 1, 1), (0.4, 1, 1), (0.25, 1, 2), (0.4, 1, 2)))
def glass_blur(x, c, g):
    """Blur, then give each pixel a random neighbour's value (bottom-right to top-left, as the generator's loop),
    blur. The generator means to swap the two pixels, but its ``a, b = b, a`` acts on numpy views and so copies
    the neighbour over the pixel; the published CIFAR-10-C was made that way, and so is this."""
    sigma, delta, iterations = c
    x = torch.floor(gaussian_blur(x, sigma) * 255) / 255  # the generator truncates to uint8 between the steps
    n, _, h, w = x.shape
    rows = torch.arange(n)
    for _ in range(iterations):
        for i in range(h - delta, delta, -1):
            for j in range(w - delta, delta, -1):
                d = torch.randint(-delta, delta, (2, n), generator=g)  # numpy's randint(-d, d): d itself excluded
                i2, j2 = i + d[1], j + d[0]
                x[rows, :, i, j] = x[rows, :, i2, j2]
    return gaussian_blur(x, sigma)


@register(CIFAR, "blur", ((6, 1), (6, 1.5), (6, 2), (8, 2), (9, 2.5)))
def motion_blur(x, c, g):
    radius, sigma = c
    angles = uniform(g, (len(x),), -45, 45)
    return filter_per_image(x, motion_kernels(radius, sigma, angles), mode="replicate")


# The generator's zooms are np.arange(1, 1.06, 0.01) and so on, taken as numpy makes them: 1.00 (the image itself)
# is among them, and floating point adds the end point for severities 1 and 2 (7 and 12 zooms, not 6 and 11).
@register(
    CIFAR, "blur", tuple(tuple(float(z) for z in np.arange(1, top, 0.01)) for top in (1.06, 1.11, 1.16, 1.21, 1.26))
)
def zoom_blur(x, c, g):
    out = x.clone()
    for factor in c:
        out += center_zoom(x, factor)
    return out / (len(c) + 1)


# ---- weather ----------------------------------------------------------------------------------------------------


@register(
    CIFAR,
    "weather",
    (
        (0.1, 0.2, 1, 0.6, 8, 3, 0.95),
        (0.1, 0.2, 1, 0.5, 10, 4, 0.9),
        (0.15, 0.3, 1.75, 0.55, 10, 4, 0.9),
        (0.25, 0.3, 2.25, 0.6, 12, 6, 0.85),
        (0.3, 0.3, 1.25, 0.65, 14, 12, 0.8),
    ),
)
def snow(x, c, g):
    loc, scale, zoom, threshold, radius, sigma, blend = c
    n, _, h, w = x.shape
    flakes = center_zoom(torch.randn((n, 1, h, w), generator=g) * scale + loc, zoom)
    flakes = torch.where(flakes < threshold, torch.zeros_like(flakes), flakes).clamp(0, 1)
    flakes = torch.round(flakes * 255) / 255  # the generator passes the layer through an 8-bit image
    flakes = filter_per_image(flakes, motion_kernels(radius, sigma, uniform(g, (n,), -135, -45)), mode="replicate")
    x = blend * x + (1 - blend) * torch.maximum(x, grayscale(x) * 1.5 + 0.5)
    return x + flakes + flakes.flip(-1, -2)


@functools.cache
def frost_photos() -> tuple[torch.Tensor, ...]:
    """The generator's frost photographs 1-5 (its randint(5) never draws the sixth), shrunk as it shrinks them for
    CIFAR (cv2.resize by 0.2); RGB floats in [0, 1], (3, H, W). scripts/make_frost_photos.py made the file."""
    with np.load(Path(__file__).with_name("frost_photos.npz")) as photos:
        return tuple(torch.from_numpy(photos[k]).permute(2, 0, 1).float() / 255 for k in sorted(photos.files))


def frost_layer(n: int, h: int, w: int, channels: int, g: torch.Generator) -> torch.Tensor:
    """Per image: one of the photographs at random and a random h x w crop of it, as make_cifar_c.py draws them
    (corner in [0, H - h - 1], numpy's randint with an exclusive end). Images larger than the 32 px the generator
    was written for get the photograph enlarged until it covers them (the generator itself stops at 32 px)."""
    photos = frost_photos()
    layer = torch.empty(n, 3, h, w)
    for i, k in enumerate(torch.randint(len(photos), (n,), generator=g).tolist()):
        photo = photos[k]
        grow = max((h + 1) / photo.shape[1], (w + 1) / photo.shape[2])
        if grow > 1:
            photo = F.interpolate(photo[None], scale_factor=grow, mode="bilinear", align_corners=False)[0]
        top = int(torch.randint(photo.shape[1] - h, (1,), generator=g))
        left = int(torch.randint(photo.shape[2] - w, (1,), generator=g))
        layer[i] = photo[:, top : top + h, left : left + w]
    return layer if channels == 3 else layer.mean(1, keepdim=True)  # grey images: the photograph's brightness


@register(CIFAR, "weather", ((1, 0.2), (1, 0.3), (0.9, 0.4), (0.85, 0.4), (0.75, 0.45)))
def frost(x, c, g):
    n, ch, h, w = x.shape
    return c[0] * x + c[1] * frost_layer(n, h, w, ch, g)


@register(CIFAR, "weather", ((0.2, 3), (0.5, 3), (0.75, 2.5), (1, 2), (1.5, 1.75)))
def fog(x, c, g):
    n, _, h, w = x.shape
    size = 1 << max(h - 1, w - 1, 1).bit_length()  # the smallest power of two that covers the image
    top = x.amax((1, 2, 3), keepdim=True)
    x = x + c[0] * plasma_fractal(n, size, c[1], g)[:, :h, :w].unsqueeze(1)
    return x * top / (top + c[0])


# ---- digital ----------------------------------------------------------------------------------------------------


@register(CIFAR, "digital", (0.05, 0.1, 0.15, 0.2, 0.3))
def brightness(x, c, g):
    """Add c to HSV's value, keeping hue and saturation: with H and S fixed, RGB scales with V = max(R, G, B)."""
    v = x.amax(1, keepdim=True)
    v_new = (v + c).clamp(max=1)
    return torch.where(v > 0, x * v_new / v.clamp_min(1e-12), v_new.expand_as(x))


@register(CIFAR, "digital", (0.75, 0.5, 0.4, 0.3, 0.15))
def contrast(x, c, g):
    mean = x.mean((2, 3), keepdim=True)
    return (x - mean) * c + mean


@register(CIFAR, "digital", ((0, 0, 0.08), (0.05, 0.2, 0.07), (0.08, 0.06, 0.06), (0.1, 0.04, 0.05), (0.1, 0.03, 0.03)))
def elastic_transform(x, c, g):
    """A random affine warp (corners of a centre square moved by up to c[2] of the size) then a smooth random
    displacement field (amplitude c[0], smoothness c[1], both in image sizes), in one resampling."""
    n, _, h, w = x.shape
    alpha, sigma, affine = (v * h for v in c)
    centre, side = h // 2, h // 3
    src = torch.tensor(
        [[centre + side, centre + side], [centre + side, centre - side], [centre - side, centre - side]],
        dtype=torch.float32,
    ).expand(n, 3, 2)
    dst = src + uniform(g, (n, 3, 2), -affine, affine)
    # the affine map dst -> src (pixel coordinates x, y), solved per image from the three point pairs
    ones = torch.ones(n, 3, 1)
    to_src = torch.linalg.solve(torch.cat([dst, ones], 2), src)  # (n, 3, 2)
    field = uniform(g, (n, 2, h, w), -1, 1)
    field = gaussian_blur(field, sigma, mode="reflect", truncate=3.0) * alpha if sigma > 0 else field * 0
    yy, xx = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij")
    px, py = xx + field[:, 0], yy + field[:, 1]
    pts = torch.stack([px, py, torch.ones_like(px)], -1).reshape(n, -1, 3)
    sx, sy = (pts @ to_src).reshape(n, h, w, 2).unbind(-1)
    grid = torch.stack([2 * sx / (w - 1) - 1, 2 * sy / (h - 1) - 1], -1)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=True)


@register(CIFAR, "digital", (0.95, 0.9, 0.85, 0.75, 0.65))
def pixelate(x, c, g):
    h, w = x.shape[-2:]
    small = torch.round(box_resize(x, int(h * c), int(w * c)) * 255) / 255  # PIL's BOX filter on 8-bit images
    return box_resize(small, h, w)


@register(CIFAR, "digital", (80, 65, 58, 50, 40))
def jpeg_compression(x, c, g):
    """Pillow's JPEG encoder at quality c, as the generator (torchvision's encoder is deprecated from 0.29)."""
    import io

    import numpy as np
    from PIL import Image

    out = []
    for img in torch.round(x * 255).to(torch.uint8).permute(0, 2, 3, 1).numpy():
        buf = io.BytesIO()
        Image.fromarray(img[..., 0] if img.shape[-1] == 1 else img).save(buf, "JPEG", quality=int(c))
        out.append(np.asarray(Image.open(buf)).reshape(img.shape))
    return torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2).float() / 255


# ---- MNIST-C-style set for grey digits --------------------------------------------------------------------------

for _name in ("shot_noise", "impulse_noise", "glass_blur", "motion_blur", "fog", "brightness"):
    DIGITS[_name] = CIFAR[_name]
DIGITS["brightness"] = Corruption("brightness", "digital", (0.1, 0.2, 0.3, 0.4, 0.5), brightness)


def _affine(x: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """Warp each image by its 2x3 matrix in normalised coordinates (output -> input), zeros outside."""
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def _signs(g: torch.Generator, n: int) -> torch.Tensor:
    return torch.randint(0, 2, (n,), generator=g).float() * 2 - 1


def _identity(n: int) -> torch.Tensor:
    return torch.eye(2, 3).repeat(n, 1, 1)


@register(DIGITS, "geometric", (0.1, 0.2, 0.3, 0.4, 0.5))
def digit_shear(x, c, g):
    theta = _identity(len(x))
    theta[:, 0, 1] = c * _signs(g, len(x))
    return _affine(x, theta)


@register(DIGITS, "geometric", (0.9, 0.8, 0.7, 0.6, 0.5))
def digit_scale(x, c, g):
    return _affine(x, _identity(len(x)) / c)


@register(DIGITS, "geometric", (10, 20, 30, 40, 50))
def digit_rotate(x, c, g):
    a = torch.deg2rad(c * _signs(g, len(x)))
    theta = torch.zeros(len(x), 2, 3)
    theta[:, 0, 0], theta[:, 0, 1], theta[:, 1, 0], theta[:, 1, 1] = a.cos(), -a.sin(), a.sin(), a.cos()
    return _affine(x, theta)


@register(DIGITS, "geometric", (1, 2, 3, 4, 5))
def digit_translate(x, c, g):
    n, _, h, w = x.shape
    angle = uniform(g, (n,), 0, 2 * math.pi)
    theta = _identity(n)
    theta[:, 0, 2], theta[:, 1, 2] = 2 * c / w * angle.cos(), 2 * c / h * angle.sin()
    return _affine(x, theta)


@register(DIGITS, "occlusion", (2, 3, 4, 5, 6))
def digit_stripe(x, c, g):
    """Invert a vertical stripe c pixels wide at a random place (MNIST-C's stripe)."""
    n, _, _, w = x.shape
    start = torch.randint(0, w - c + 1, (n,), generator=g).view(n, 1, 1, 1)
    cols = torch.arange(w).view(1, 1, 1, w)
    inside = (cols >= start) & (cols < start + c)
    return torch.where(inside, 1 - x, x)


def _draw(x: torch.Tensor, points_y: torch.Tensor, points_x: torch.Tensor) -> torch.Tensor:
    """Set the pixels at (N, P) float coordinates to white in every channel."""
    n, ch, h, w = x.shape
    r = points_y.round().long().clamp(0, h - 1)
    col = points_x.round().long().clamp(0, w - 1)
    flat = x.reshape(n, ch, h * w).clone()
    flat.scatter_(2, (r * w + col).unsqueeze(1).expand(n, ch, -1), 1.0)
    return flat.reshape(n, ch, h, w)


@register(DIGITS, "occlusion", (1, 2, 3, 4, 5))
def digit_dotted_line(x, c, g):
    """c straight dotted lines between random points (a dot every third pixel)."""
    n, _, h, w = x.shape
    for _ in range(c):
        p0, p1 = uniform(g, (n, 2, 1), 0, h - 1), uniform(g, (n, 2, 1), 0, w - 1)
        t = torch.linspace(0, 1, 3 * h)[::3].view(1, 1, -1)
        pts = p0 + (p1 - p0) * t
        x = _draw(x, pts[:, 0], pts[:, 1])
    return x


@register(DIGITS, "occlusion", (1, 2, 3, 4, 5))
def digit_zigzag(x, c, g):
    """c zigzag lines: polylines of five random segments, drawn solid."""
    n, _, h, w = x.shape
    for _ in range(c):
        corners = uniform(g, (n, 2, 6), 0, h - 1)
        t = torch.linspace(0, 1, 4 * h)
        segment = torch.clamp((t * 5).long(), max=4)
        frac = (t * 5 - segment).view(1, 1, -1)
        pts = corners[:, :, segment] + (corners[:, :, segment + 1] - corners[:, :, segment]) * frac
        x = _draw(x, pts[:, 0], pts[:, 1])
    return x


# ---- entry points -----------------------------------------------------------------------------------------------


def corruption_set(channels: int) -> dict[str, Corruption]:
    """CIFAR-10-C's 15 for colour images, the MNIST-C-style set for grey ones."""
    return CIFAR if channels == 3 else DIGITS


def set_name(channels: int, names=None) -> str:
    """The corruption set's name; where only some of it ran (``names``), which ones, so a partial run is never
    taken for the benchmark."""
    full = "CIFAR-10-C" if channels == 3 else "MNIST-C-style (grey digits)"
    table = corruption_set(channels)
    if names is None or set(names) == set(table):
        return f"CIFAR-10-C ({len(table)} corruptions)" if channels == 3 else full
    if not names:
        return f"{full}: none run"
    return f"{full}, {len(names)} of its {len(table)} corruptions: {', '.join(names)}"


def check_corruption_names(names, channels: int) -> list[str]:
    """The named corruptions of the set for these images, or a ConfigError naming the nearest ones."""
    table = corruption_set(channels)
    bad = [n for n in names if n not in table]
    if bad:
        hints = [f"{n!r}{did_you_mean(n, table)}" for n in bad]
        raise ConfigError(
            f"Unknown corruption {', '.join(hints)} for {set_name(channels)} images. Choose from: "
            f"{', '.join(table)}, or 'all'."
        )
    return list(names)


def corrupt(name: str, images: torch.Tensor, severity: int, seed: int = 0) -> torch.Tensor:
    """Corrupt a uint8 batch (N, C, H, W) at severity 1-5; the same seed gives the same images."""
    table = corruption_set(images.shape[1])
    check_corruption_names([name], images.shape[1])
    if severity not in range(1, 6):
        raise ConfigError(f"Severity must be 1 to 5 (got {severity}).")
    c = table[name]
    g = torch.Generator().manual_seed(seed)
    x = images.detach().to("cpu", torch.float32) / 255
    out = c.fn(x, c.severities[severity - 1], g)
    return torch.round(out.clamp(0, 1) * 255).to(torch.uint8)
