"""Objects to image: only pictures that ship inside installed wheels, or the user's own folder.

Sources: ``sample_images`` (scikit-learn's ``load_sample_images``: two 427x640 colour photographs),
``digits`` (scikit-learn's 8x8 handwritten digits, grey), ``skimage`` (scikit-image's bundled photographs, when
scikit-image is installed; nothing is downloaded), or a folder path of PNG/JPEG files. Images come back as float
arrays in [0, 1] of shape (H, W, C).

>>> imgs = load_objects("digits", color=False)
>>> len(imgs), imgs[0].shape
(1797, (8, 8, 1))
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import torch

from lmlab.config import ConfigError

SOURCES = ("sample_images", "digits", "skimage")
#: scikit-image's bundled (not downloaded) photographs
_SKIMAGE = ("astronaut", "camera", "coffee", "chelsea", "rocket", "immunohistochemistry", "coins", "moon")


def _area_downsample(img: np.ndarray, f: int) -> np.ndarray:
    if f <= 1:
        return img
    h, w = (img.shape[0] // f) * f, (img.shape[1] // f) * f
    return img[:h, :w].reshape(h // f, f, w // f, f, -1).mean((1, 3))


def load_objects(source: str = "sample_images", color: bool = True, downsample: int = 1) -> list[np.ndarray]:
    """Images in [0, 1], each (H, W, C) with C = 3 (``color``) or 1 (grey: the channel mean)."""
    if source in SOURCES:
        imgs = [im.copy() for im in _bundled(source)]
    else:
        imgs = _folder(source)
    out = []
    for im in imgs:
        im = im[..., :3]
        if color and im.shape[-1] == 1:
            im = np.repeat(im, 3, -1)
        if not color:
            im = im.mean(-1, keepdims=True)
        out.append(_area_downsample(im, downsample))
    return out


@functools.lru_cache(maxsize=len(SOURCES))
def _bundled(source: str) -> tuple[np.ndarray, ...]:
    """The decoded images of a bundled source, once per process (decoding the JPEGs is the cost; the files ship
    inside installed wheels and do not change while it runs). Callers get copies."""
    if source == "sample_images":
        from sklearn.datasets import load_sample_images

        imgs = [np.asarray(im, dtype=np.float64) / 255.0 for im in load_sample_images().images]
    elif source == "digits":
        from sklearn.datasets import load_digits

        imgs = [im[..., None] / 16.0 for im in load_digits().images.astype(np.float64)]
    elif source == "skimage":
        try:
            import skimage.data as skd
        except ImportError:
            raise ConfigError("objects.source 'skimage' needs scikit-image installed; use sample_images or a "
                              "folder") from None
        imgs = []
        for name in _SKIMAGE:
            try:
                im = np.asarray(getattr(skd, name)(), dtype=np.float64)
            except Exception:  # noqa: BLE001 - an image that would need a download is skipped
                continue
            im = im / (255.0 if im.max() > 1 else 1.0)
            imgs.append(im if im.ndim == 3 else im[..., None])
    return tuple(imgs)


def _folder(source: str) -> list[np.ndarray]:
    """The PNG/JPEG files of a folder (read on every call: the folder may change)."""
    folder = Path(source).expanduser()
    if not folder.is_dir():
        raise ConfigError(f"objects.source {source!r} is neither one of {', '.join(SOURCES)} nor a folder; "
                          "give a folder of PNG/JPEG images")
    from PIL import Image

    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg", ".tif", ".bmp"))
    if not files:
        raise ConfigError(f"objects.source folder {folder} holds no PNG/JPEG images; add some or pick a bundled "
                          "source")
    imgs = [np.asarray(Image.open(p).convert("RGB"), dtype=np.float64) / 255.0 for p in files]
    return imgs


def random_patches(images: list[np.ndarray], n: int, size: int, rng: np.random.Generator,
                   rows: tuple[float, float] = (0.0, 1.0)) -> torch.Tensor:
    """``n`` random (C, size, size) crops as a float32 tensor (N, C, size, size). ``rows`` keeps crops inside a
    band of each image's height (fractions), so a train band and a test band never overlap."""
    sizes = []
    for im in images:
        lo, hi = int(rows[0] * im.shape[0]), int(rows[1] * im.shape[0])
        if hi - lo < size or im.shape[1] < size:
            raise ConfigError(f"objects: a {size}x{size} patch does not fit in an image band of "
                              f"{hi - lo}x{im.shape[1]}; lower the patch size or the downsampling")
        sizes.append((lo, hi))
    which = rng.integers(0, len(images), n)
    out = np.empty((n, images[0].shape[-1], size, size), dtype=np.float32)
    for k, i in enumerate(which):
        im, (lo, hi) = images[i], sizes[i]
        r = rng.integers(lo, hi - size + 1)
        c = rng.integers(0, im.shape[1] - size + 1)
        out[k] = im[r : r + size, c : c + size].transpose(2, 0, 1)
    return torch.from_numpy(out)
