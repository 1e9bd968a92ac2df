"""Image operations the corruptions share, on float batches (N, C, H, W) in [0, 1]: blurs, zooms, fractal noise."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def gaussian_kernel1d(sigma: float, truncate: float = 4.0) -> torch.Tensor:
    radius = max(1, int(truncate * sigma + 0.5))
    t = torch.arange(-radius, radius + 1, dtype=torch.float32)
    k = torch.exp(-0.5 * (t / max(sigma, 1e-6)) ** 2)
    return k / k.sum()


def gaussian_blur(x: torch.Tensor, sigma: float, mode: str = "replicate", truncate: float = 4.0) -> torch.Tensor:
    """Separable Gaussian blur of every channel (scikit-image's ``gaussian``: 'nearest' edges = replicate)."""
    if sigma <= 0:
        return x
    k = gaussian_kernel1d(sigma, truncate).to(x)
    r = len(k) // 2
    n, c, h, w = x.shape
    y = x.reshape(n * c, 1, h, w)
    y = F.conv2d(F.pad(y, (r, r, 0, 0), mode=mode), k.view(1, 1, 1, -1))
    y = F.conv2d(F.pad(y, (0, 0, r, r), mode=mode), k.view(1, 1, -1, 1))
    return y.reshape(n, c, h, w)


def filter_per_image(x: torch.Tensor, kernels: torch.Tensor, mode: str = "reflect") -> torch.Tensor:
    """Convolve each image with its own 2-D kernel (kernels: (N, k, k) or (k, k), odd k), all channels alike."""
    n, c, h, w = x.shape
    if kernels.dim() == 2:
        kernels = kernels.expand(n, *kernels.shape)
    r = kernels.shape[-1] // 2
    pad_mode = mode if r < min(h, w) else "replicate"  # reflection needs the image to be larger than the kernel
    y = F.pad(x.reshape(1, n * c, h, w), (r, r, r, r), mode=pad_mode)
    weight = kernels.to(x).repeat_interleave(c, dim=0).unsqueeze(1)  # one kernel per (image, channel)
    return F.conv2d(y, weight.flip(-1, -2), groups=n * c).reshape(n, c, h, w)


def disk_kernel(radius: float, alias_blur: float) -> torch.Tensor:
    """The defocus kernel of the CIFAR-10-C generator: an aliased disk smoothed by a small Gaussian."""
    half = 8 if radius <= 8 else math.ceil(radius)
    t = torch.arange(-half, half + 1, dtype=torch.float32)
    yy, xx = torch.meshgrid(t, t, indexing="ij")
    disk = ((xx**2 + yy**2) <= radius**2).float()
    disk = disk / disk.sum()
    g = torch.exp(-0.5 * (torch.tensor([-1.0, 0.0, 1.0]) / max(alias_blur, 1e-6)) ** 2)
    g = g / g.sum()
    return F.conv2d(disk.view(1, 1, *disk.shape), (g.view(-1, 1) * g.view(1, -1)).view(1, 1, 3, 3), padding=1)[0, 0]


def motion_kernels(radius: int, sigma: float, angles_deg: torch.Tensor) -> torch.Tensor:
    """One-sided motion-blur kernels, one per angle: Gaussian weights (sigma) along a line of ``radius`` pixels
    from the centre, as ImageMagick's -motion-blur builds them (the CIFAR-10-C generator calls ImageMagick)."""
    size = 2 * radius + 1
    i = torch.arange(radius + 1, dtype=torch.float32)
    weights = torch.exp(-(i**2) / (2 * sigma**2))
    a = torch.deg2rad(angles_deg.float()).view(-1, 1)
    cols = (radius + torch.round(i * torch.cos(a))).long().clamp(0, size - 1)
    rows = (radius + torch.round(i * torch.sin(a))).long().clamp(0, size - 1)
    k = torch.zeros(len(angles_deg), size * size)
    k.scatter_add_(1, rows * size + cols, weights.expand(len(angles_deg), -1).contiguous())
    # ImageMagick averages the pixels *behind* the motion, so the kernel points back along the line.
    return (k / k.sum(1, keepdim=True)).view(-1, size, size).flip(-1, -2)


def center_zoom(x: torch.Tensor, factor: float) -> torch.Tensor:
    """Zoom into the centre by ``factor`` (>= 1), keeping the size (bilinear, like scipy's order-1 zoom)."""
    n, c, h, w = x.shape
    ch, cw = math.ceil(h / factor), math.ceil(w / factor)
    top, left = (h - ch) // 2, (w - cw) // 2
    crop = x[:, :, top : top + ch, left : left + cw]
    zh, zw = max(h, round(ch * factor)), max(w, round(cw * factor))
    big = F.interpolate(crop, size=(zh, zw), mode="bilinear", align_corners=False)
    th, tw = (zh - h) // 2, (zw - w) // 2
    return big[:, :, th : th + h, tw : tw + w]


def plasma_fractal(n: int, size: int, wibble_decay: float, generator: torch.Generator) -> torch.Tensor:
    """(n, size, size) diamond-square fractal noise in [0, 1] (size a power of two), as the generator's fog uses."""
    maps = torch.zeros(n, size, size)
    step, wibble = size, 100.0
    while step >= 2:
        half = step // 2
        amp = wibble * wibble  # the generator's wibbledmean: wibble * uniform(-wibble, wibble)
        # squares: each centre is the mean of its four corners plus noise
        corners = maps[:, 0:size:step, 0:size:step]
        around = (
            corners + torch.roll(corners, -1, 1) + torch.roll(corners, -1, 2) + torch.roll(corners, (-1, -1), (1, 2))
        )
        maps[:, half:size:step, half:size:step] = around / 4 + amp * (
            torch.rand(around.shape, generator=generator) * 2 - 1
        )
        # diamonds: each edge midpoint is the mean of its four neighbours plus noise
        centres = maps[:, half:size:step, half:size:step]
        tl = maps[:, 0:size:step, 0:size:step]
        left_mid = (tl + torch.roll(tl, -1, 1) + centres + torch.roll(centres, 1, 2)) / 4
        top_mid = (tl + torch.roll(tl, -1, 2) + centres + torch.roll(centres, 1, 1)) / 4
        maps[:, half:size:step, 0:size:step] = left_mid + amp * (
            torch.rand(left_mid.shape, generator=generator) * 2 - 1
        )
        maps[:, 0:size:step, half:size:step] = top_mid + amp * (torch.rand(top_mid.shape, generator=generator) * 2 - 1)
        step = half
        wibble /= wibble_decay
    low = maps.amin((1, 2), keepdim=True)
    return (maps - low) / (maps.amax((1, 2), keepdim=True) - low).clamp_min(1e-12)


def grayscale(x: torch.Tensor) -> torch.Tensor:
    if x.shape[1] == 1:
        return x
    return 0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3]


def box_weights(n_in: int, n_out: int) -> torch.Tensor:
    """(n_out, n_in) resampling matrix of PIL's BOX filter: an output pixel averages the input pixels whose centres
    lie within its footprint (at least one input pixel wide when enlarging: then it is nearest-neighbour)."""
    scale = n_in / n_out
    footprint = max(scale, 1.0)
    centre = ((torch.arange(n_out, dtype=torch.float64) + 0.5) * scale).view(-1, 1)
    offset = (torch.arange(n_in, dtype=torch.float64).view(1, -1) + 0.5 - centre) / footprint
    inside = ((offset >= -0.5) & (offset < 0.5)).double()
    return (inside / inside.sum(1, keepdim=True)).float()


def box_resize(x: torch.Tensor, height: int, width: int) -> torch.Tensor:
    rows, cols = box_weights(x.shape[-2], height).to(x), box_weights(x.shape[-1], width).to(x)
    return rows @ x @ cols.T
