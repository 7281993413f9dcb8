"""synthetic-retina: procedurally generated fundus + OCT pairs imitating the MMC-AMD task.

The benchmark has to measure three things that real multimodal retina data has, on a laptop
CPU and without a download (DATASETS.md, synthetic-retina):

- cross-modal shared evidence: every lesion has one horizontal position (``lesion_x``),
  drawn once per sample and drawn at that column in every modality;
- modality-specific nuisance: fundus tint, illumination and a random vessel tree; OCT
  speckle, tilt and curvature, layer thickness, vessel shadows and blur; each modality draws
  its nuisance from its own random stream, so no nuisance is shared between modalities;
- one modality more reliable than the other for some classes: the fundus signature of wet
  AMD is faint while its OCT signature is strong (as in the real disease); the fundus tells
  PCV from wet AMD better than the OCT does; small drusen are clearer on the fundus.

Disease signatures (lesions lie near the macula, at the centre of the image):

- ``normal``: none.
- ``dry_amd``: drusen, small yellow dots on the fundus and small bumps under the RPE band
  on the OCT (same columns).
- ``wet_amd``: a faint dark-red blob on the fundus; a dark fluid pocket above the RPE, over
  a shallow irregular RPE elevation, on the OCT.
- ``pcv``: orange-red nodules on the fundus; a sharp dome-shaped RPE detachment with a dark
  space beneath it on the OCT, sometimes with a little fluid beside it.
- third modality (``modalities=3``), angiography-like: bright vessels, dark fovea; wet AMD
  leaks as a diffuse bright blob, PCV shows focal hot spots, drusen stain faintly.

Severity scales every lesion's contrast and size; ``difficulty`` divides lesion contrast
(1.0 is the calibrated default held by the tests: late fusion of two small CNNs reaches
80-95 % test accuracy, each modality alone at least 10 points less, OCT beats fundus on
wet vs dry AMD). Everything is pure numpy, vectorised over samples, and deterministic in
``seed``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bench.errors import ConfigError

CLASSES: tuple[str, ...] = ("normal", "dry_amd", "wet_amd", "pcv")
MODALITIES: tuple[str, ...] = ("fundus", "oct", "angio")  # the first `modalities` are used
CHANNELS: tuple[int, ...] = (3, 1, 1)

NORMAL, DRY, WET, PCV = range(len(CLASSES))
MAX_DRUSEN = 12
MAX_NODULES = 3
NUM_VESSELS = 10


@dataclass(frozen=True)
class SyntheticSamples:
    """Generated samples; ``images[m]`` is the uint8 ``(n, CHANNELS[m], H, W)`` array of modality m."""

    images: tuple[np.ndarray, ...]
    labels: np.ndarray  # int64 (n,), the (possibly noisy) labels
    severity: np.ndarray  # float32 (n,), 0 for normal eyes
    lesion_x: np.ndarray  # float32 (n,), horizontal lesion position in [0, 1]


@dataclass(frozen=True)
class _Lesions:
    """Per-sample lesion geometry shared by all modalities; contrasts already include severity."""

    classes: np.ndarray  # (n,) true class
    strength: np.ndarray  # (n,) lesion contrast, 0 for normal
    x: np.ndarray  # (n,) lesion centre, normalised columns
    y: np.ndarray  # (n,) lesion centre, normalised rows (fundus and angiography)
    size: np.ndarray  # (n,) lesion extent multiplier
    drusen_x: np.ndarray  # (n, MAX_DRUSEN)
    drusen_y: np.ndarray  # (n, MAX_DRUSEN)
    drusen_amp: np.ndarray  # (n, MAX_DRUSEN), 0 where absent
    nodule_x: np.ndarray  # (n, MAX_NODULES)
    nodule_y: np.ndarray  # (n, MAX_NODULES)
    nodule_amp: np.ndarray  # (n, MAX_NODULES), 0 where absent
    pcv_fluid: np.ndarray  # (n,) fluid beside a PCV dome, 0 elsewhere


def generate(
    n: int,
    seed: int,
    image_size: int = 64,
    modalities: int = 2,
    label_noise: float = 0.0,
    difficulty: float = 1.0,
) -> SyntheticSamples:
    """Generate ``n`` samples of ``modalities`` images each (fundus, OCT, angiography).

    Classes are balanced up to one sample and shuffled by ``np.random.default_rng(seed)``.
    A fraction ``label_noise`` of the labels (rounded to a count) is flipped uniformly to
    another class; the images always show the true class. Images do not depend on
    ``label_noise`` or ``modalities``: each modality and the label noise draw from their own
    child stream of the seed.
    """
    _check_arguments(n, image_size, modalities, label_noise, difficulty)
    rng = np.random.default_rng(seed)
    classes = rng.permutation(np.arange(n) % len(CLASSES))
    severity = np.where(classes == NORMAL, 0.0, rng.uniform(0.0, 1.0, n))
    lesions = _draw_lesions(rng, classes, severity, difficulty)
    fundus_rng, oct_rng, angio_rng, label_rng = rng.spawn(4)
    images = [
        _render_fundus(fundus_rng, lesions, image_size),
        _render_oct(oct_rng, lesions, image_size),
    ]
    if modalities == 3:
        images.append(_render_angio(angio_rng, lesions, image_size))
    return SyntheticSamples(
        images=tuple(images),
        labels=_flip_labels(label_rng, classes, label_noise),
        severity=severity.astype(np.float32),
        lesion_x=lesions.x.astype(np.float32),
    )


def _check_arguments(
    n: int, image_size: int, modalities: int, label_noise: float, difficulty: float
) -> None:
    if n < 1:
        raise ConfigError(f"n must be at least 1, got {n}: ask for one sample or more")
    if image_size < 16:
        raise ConfigError(f"image_size must be at least 16, got {image_size}: use e.g. 64")
    if modalities not in (2, 3):
        raise ConfigError(
            f"modalities must be 2 (fundus, oct) or 3 (+ angio), got {modalities}: use 2 or 3"
        )
    if not 0.0 <= label_noise < 1.0:
        raise ConfigError(
            f"label_noise must be in [0, 1), got {label_noise}: use e.g. 0.1 to flip 10 % of labels"
        )
    if not difficulty > 0.0:
        raise ConfigError(
            f"difficulty must be positive, got {difficulty}: use 1.0 (default) or more for harder"
        )


def _flip_labels(rng: np.random.Generator, classes: np.ndarray, fraction: float) -> np.ndarray:
    labels = classes.astype(np.int64)
    count = int(round(fraction * len(labels)))
    flipped = rng.choice(len(labels), size=count, replace=False)
    offset = rng.integers(1, len(CLASSES), size=count)
    labels[flipped] = (labels[flipped] + offset) % len(CLASSES)
    return labels


def _draw_lesions(
    rng: np.random.Generator, classes: np.ndarray, severity: np.ndarray, difficulty: float
) -> _Lesions:
    n = len(classes)
    diseased = classes != NORMAL
    strength = np.where(diseased, (0.5 + 0.5 * severity) / difficulty, 0.0)
    x = rng.uniform(0.36, 0.64, n)
    y = 0.5 + rng.normal(0.0, 0.04, n)
    size = 0.75 + 0.5 * severity

    drusen_x = x[:, None] + rng.normal(0.0, 0.05, (n, MAX_DRUSEN))
    drusen_y = y[:, None] + rng.normal(0.0, 0.05, (n, MAX_DRUSEN))
    drusen_count = np.round(6 + (MAX_DRUSEN - 6) * severity)
    drusen_on = (classes == DRY)[:, None] & (np.arange(MAX_DRUSEN) < drusen_count[:, None])
    drusen_amp = drusen_on * strength[:, None] * rng.uniform(0.6, 1.0, (n, MAX_DRUSEN))

    nodule_x = x[:, None] + rng.normal(0.0, 0.03, (n, MAX_NODULES))
    nodule_x[:, 0] = x
    nodule_y = y[:, None] + rng.normal(0.0, 0.03, (n, MAX_NODULES))
    nodule_count = rng.integers(1, MAX_NODULES + 1, n)
    nodule_on = (classes == PCV)[:, None] & (np.arange(MAX_NODULES) < nodule_count[:, None])
    nodule_amp = nodule_on * strength[:, None] * rng.uniform(0.7, 1.0, (n, MAX_NODULES))

    pcv_fluid = (classes == PCV) * (rng.uniform(0, 1, n) < 0.5) * rng.uniform(0.3, 0.8, n)
    return _Lesions(
        classes=classes,
        strength=strength,
        x=x,
        y=y,
        size=size,
        drusen_x=drusen_x,
        drusen_y=drusen_y,
        drusen_amp=drusen_amp,
        nodule_x=nodule_x,
        nodule_y=nodule_y,
        nodule_amp=nodule_amp,
        pcv_fluid=pcv_fluid * strength,
    )


# ---------------------------------------------------------------------------------------
# Shared helpers. Coordinates are normalised to [0, 1]: pixel centres (i + 0.5) / size.


def _grid(size: int) -> np.ndarray:
    return ((np.arange(size) + 0.5) / size).astype(np.float32)


def _profiles(cx: np.ndarray, amp: np.ndarray, sigma: np.ndarray | float, size: int) -> np.ndarray:
    """1-D Gaussian profiles along the image width, ``(n, K, size)``, from ``(n, K)`` arrays."""
    g = _grid(size)
    return (amp[..., None] * np.exp(-0.5 * ((g - cx[..., None]) / sigma) ** 2)).astype(np.float32)


def _spots(
    cx: np.ndarray, cy: np.ndarray, amp: np.ndarray, sigma: np.ndarray | float, size: int
) -> np.ndarray:
    """Sum of isotropic Gaussian spots, ``(n, size, size)``; all spot arrays are ``(n, K)``.

    Each spot is separable, so the sum is one contraction of row and column profiles.
    """
    g = _grid(size)
    sigma = np.broadcast_to(np.asarray(sigma, dtype=np.float32), np.shape(cx))
    rows = np.exp(-0.5 * ((g - cy[..., None]) / sigma[..., None]) ** 2)
    cols = np.exp(-0.5 * ((g - cx[..., None]) / sigma[..., None]) ** 2)
    return np.einsum("nk,nkh,nkw->nhw", amp, rows, cols).astype(np.float32)


def _smooth_noise(rng: np.random.Generator, n: int, size: int, scale: float) -> np.ndarray:
    """White noise low-passed to correlation length ``scale`` (normalised), unit std."""
    noise = rng.standard_normal((n, size, size), dtype=np.float32)
    freq = np.fft.fftfreq(size).astype(np.float32) * size  # cycles per image
    f2 = freq[:, None] ** 2 + freq[None, : size // 2 + 1] ** 2
    smooth = np.fft.irfft2(
        np.fft.rfft2(noise) * np.exp(-2.0 * (np.pi * scale) ** 2 * f2), s=(size, size)
    )
    smooth -= smooth.mean(axis=(-2, -1), keepdims=True)
    return (smooth / (smooth.std(axis=(-2, -1), keepdims=True) + 1e-6)).astype(np.float32)


def _blur(images: np.ndarray, sigma_px: np.ndarray) -> np.ndarray:
    """Gaussian blur of ``(n, H, W)`` images, one sigma (pixels) per image, edges reflected."""
    pad = int(np.ceil(3 * sigma_px.max())) + 1
    padded = np.pad(images, ((0, 0), (pad, pad), (pad, pad)), mode="reflect")
    h, w = padded.shape[1:]
    fy = np.fft.fftfreq(h).astype(np.float32)
    fx = np.fft.rfftfreq(w).astype(np.float32)
    f2 = fy[:, None] ** 2 + fx[None, :] ** 2
    kernel = np.exp(-2.0 * np.pi**2 * sigma_px[:, None, None] ** 2 * f2)
    blurred = np.fft.irfft2(np.fft.rfft2(padded) * kernel, s=(h, w))
    return blurred[:, pad:-pad, pad:-pad].astype(np.float32)


def _vessel_tree(rng: np.random.Generator, n: int, size: int, disc: np.ndarray) -> np.ndarray:
    """A random vessel tree leaving the optic disc, ``(n, size, size)`` in [0, 1].

    Vessels are curves in polar coordinates around the disc (angle drifting with radius,
    with a wiggle); the first four are the temporal arcades that bend around the macula,
    the others are thinner branches that start away from the disc.
    """
    g = _grid(size)
    side = np.sign(0.5 - disc[:, 0]).astype(np.float32)  # +1: the macula is right of the disc
    du = (g[None, None, :] - disc[:, 0, None, None].astype(np.float32)) * side[:, None, None]
    dv = g[None, :, None] - disc[:, 1, None, None].astype(np.float32)
    radius = np.sqrt(du**2 + dv**2)
    angle = np.arctan2(dv, du)  # 0 points at the macula
    fade = np.clip((0.75 - radius) / 0.2, 0.0, 1.0)
    taper = np.clip(1.0 - 0.9 * radius, 0.3, 1.0)

    shape = (n, NUM_VESSELS)
    major = np.arange(NUM_VESSELS) < 4
    updown = np.where(np.arange(NUM_VESSELS) % 2 == 0, 1.0, -1.0)
    start_angle = np.where(
        major, updown * rng.uniform(1.0, 1.5, shape), rng.uniform(-np.pi, np.pi, shape)
    )
    drift = np.where(major, -updown * rng.uniform(1.0, 2.0, shape), rng.normal(0.0, 1.0, shape))
    wiggle = rng.uniform(0.02, 0.08, shape)
    wiggle_freq = rng.uniform(8.0, 20.0, shape)
    phase = rng.uniform(0.0, 2 * np.pi, shape)
    start_radius = np.where(major, 0.0, rng.uniform(0.05, 0.25, shape))
    width = np.where(major, rng.uniform(0.011, 0.016, shape), 0.007)
    darkness = rng.uniform(0.4, 0.8, shape)
    params = np.stack(
        [start_angle, drift, wiggle, wiggle_freq, phase, start_radius, width, darkness]
    ).astype(np.float32)[..., None, None]  # (8, n, K, 1, 1)

    tree = np.zeros((n, size, size), dtype=np.float32)
    for a0, drift_k, wig, freq, ph, r0, w, dark in params.transpose(2, 0, 1, 3, 4):
        course = a0 + drift_k * radius + wig * np.sin(freq * radius + ph)
        offset = np.remainder(angle - course + np.pi, 2 * np.pi) - np.pi  # wrapped angle
        offset *= radius / (w * taper)
        tree += dark * (radius > r0) * fade * np.exp(-0.5 * offset**2)
    return np.clip(tree, 0.0, 1.0)


def _to_uint8(image: np.ndarray) -> np.ndarray:
    return np.round(np.clip(image, 0.0, 1.0) * 255.0).astype(np.uint8)


def _disc_centres(rng: np.random.Generator, n: int) -> np.ndarray:
    """Optic disc centres (n, 2): left or right of the macula, as in left and right eyes."""
    side = rng.choice([-1.0, 1.0], n)
    return np.stack(
        [0.5 + side * rng.uniform(0.26, 0.31, n), 0.5 + rng.normal(0.0, 0.03, n)], axis=1
    )


def _fundus_field(size: int, centre: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distance to the (per-sample) image centre and the round camera aperture mask."""
    g = _grid(size)
    r = np.sqrt(
        (g[None, None, :] - centre[:, 0, None, None]) ** 2
        + (g[None, :, None] - centre[:, 1, None, None]) ** 2
    )
    aperture = np.clip((0.47 - r) * size / 1.5, 0.0, 1.0)
    return r, aperture


# ---------------------------------------------------------------------------------------
# Fundus photograph (RGB).


def _render_fundus(rng: np.random.Generator, lesions: _Lesions, size: int) -> np.ndarray:
    n = len(lesions.classes)
    g = _grid(size)
    centre = 0.5 + rng.normal(0.0, 0.01, (n, 2))
    r, aperture = _fundus_field(size, centre)
    disc = _disc_centres(rng, n)

    # Fundus colour with a per-eye tint, choroidal texture and the darker macula.
    base = np.array([0.80, 0.36, 0.16], dtype=np.float32)
    tint = base * np.exp(rng.normal(0.0, [0.03, 0.05, 0.06], (n, 3)))
    texture = 1.0 + 0.04 * _smooth_noise(rng, n, size, 0.03)
    r_macula = np.sqrt(
        (g[None, None, :] - 0.5) ** 2 + (g[None, :, None] - lesions.y[:, None, None]) ** 2
    )
    macula = 1.0 - rng.uniform(0.15, 0.3, (n, 1, 1)) * np.exp(-0.5 * (r_macula / 0.09) ** 2)
    rgb = tint[:, :, None, None] * (texture * macula)[:, None]

    # Lesions, before illumination (they are part of the eye, not of the camera).
    drusen = _spots(lesions.drusen_x, lesions.drusen_y, lesions.drusen_amp, 0.03, size)
    rgb += np.array([0.30, 0.30, 0.10], dtype=np.float32)[:, None, None] * drusen[:, None]
    blob_sigma = (0.055 * lesions.size)[:, None]
    blob = _spots(
        lesions.x[:, None],
        lesions.y[:, None],
        (lesions.classes == WET)[:, None] * lesions.strength[:, None],
        blob_sigma,
        size,
    )
    rgb *= 1.0 - np.array([0.08, 0.20, 0.20], dtype=np.float32)[:, None, None] * blob[:, None]
    nodules = _spots(lesions.nodule_x, lesions.nodule_y, lesions.nodule_amp, 0.045, size)
    rgb += np.array([0.35, 0.08, 0.0], dtype=np.float32)[:, None, None] * nodules[:, None]

    # Vessels (dark red) and the bright yellow optic disc.
    vessels = _vessel_tree(rng, n, size, disc)
    rgb *= 1.0 - np.array([0.30, 0.60, 0.55], dtype=np.float32)[:, None, None] * vessels[:, None]
    d_disc = np.sqrt(
        (g[None, None, :] - disc[:, 0, None, None]) ** 2
        + (g[None, :, None] - disc[:, 1, None, None]) ** 2
    )
    disc_radius = rng.uniform(0.055, 0.07, (n, 1, 1))
    disc_mask = np.clip((disc_radius - d_disc) * size / 1.5, 0.0, 1.0)
    cup = np.exp(-0.5 * (d_disc / (0.5 * disc_radius)) ** 2)
    disc_colour = np.array([0.98, 0.82, 0.55], dtype=np.float32)[:, None, None]
    disc_rgb = disc_colour * (0.85 + 0.15 * cup)[:, None] * (1.0 - 0.4 * vessels[:, None])
    rgb = rgb * (1.0 - disc_mask[:, None]) + disc_rgb * disc_mask[:, None]

    # Camera: uneven illumination (vignetting and a random gradient), aperture, sensor noise.
    gradient = rng.normal(0.0, 0.15, (n, 2))
    illumination = (
        rng.uniform(0.9, 1.1, (n, 1, 1))
        * (1.0 - rng.uniform(0.6, 0.9, (n, 1, 1)) * r**2)
        * (
            1.0
            + gradient[:, 0, None, None] * (g[None, None, :] - 0.5)
            + gradient[:, 1, None, None] * (g[None, :, None] - 0.5)
        )
    )
    rgb *= (illumination * aperture)[:, None]
    rgb += rng.normal(0.0, 0.012, rgb.shape).astype(np.float32) * aperture[:, None]
    return _to_uint8(rgb)


# ---------------------------------------------------------------------------------------
# OCT B-scan (grey): one horizontal scan through the macula and the lesion.

# Retinal layers between the inner limiting membrane (t = 0) and the photoreceptor tips
# (t = 1): (centre, reflectivity, half width) of RNFL, GCL + IPL, OPL, ellipsoid zone.
_LAYERS = np.array(
    [[0.03, 0.55, 0.06], [0.22, 0.25, 0.10], [0.48, 0.30, 0.035], [0.90, 0.50, 0.03]],
    dtype=np.float32,
)


def _render_oct(rng: np.random.Generator, lesions: _Lesions, size: int) -> np.ndarray:
    n = len(lesions.classes)
    g = _grid(size)
    x = g[None, :]  # (1, W) columns
    y = g[None, :, None]  # (1, H, 1) depth
    lx = lesions.x[:, None]
    classes = lesions.classes[:, None]
    strength = lesions.strength[:, None]
    size_k = lesions.size[:, None]

    # Geometry of a healthy scan: Bruch's membrane with tilt and curvature, retinal thickness,
    # foveal pit at the macula.
    bruch = (
        rng.uniform(0.61, 0.65, (n, 1))
        + rng.uniform(-0.08, 0.08, (n, 1)) * (x - 0.5)
        - rng.uniform(0.0, 0.25, (n, 1)) * (x - 0.5) ** 2
    )
    thickness = rng.uniform(0.24, 0.30, (n, 1))
    fovea = 0.5 + rng.normal(0.0, 0.03, (n, 1))
    pit = rng.uniform(0.45, 0.65, (n, 1)) * np.exp(-0.5 * ((x - fovea) / 0.06) ** 2)

    # Lesion geometry: sub-RPE elevation (drusen bumps, PCV dome, shallow PED under wet AMD)
    # and fluid above the RPE (wet AMD; sometimes beside a PCV dome).
    bumps = _profiles(lesions.drusen_x, lesions.drusen_amp, 0.02, size).max(axis=1)
    drusen_lift = 0.045 * bumps
    dome_half_width = 0.05 * size_k
    dome = np.sqrt(np.clip(1.0 - ((x - lx) / dome_half_width) ** 2, 0.0, None))
    dome_lift = (classes == PCV) * 0.15 * strength * dome
    ped_shape = np.clip(1.0 - ((x - lx) / (0.10 * size_k)) ** 2, 0.0, None)
    ped_lift = (
        (classes == WET) * 0.025 * strength * ped_shape * (1.0 + 0.3 * np.sin(40.0 * x + 6.0 * lx))
    )
    fluid_shape = np.clip(1.0 - ((x - lx) / (0.12 * size_k)) ** 2, 0.0, None) ** 0.6
    fluid_side = np.clip(1.0 - ((x - lx - 0.07) / 0.07) ** 2, 0.0, None) ** 0.6
    fluid = 0.11 * (
        (classes == WET) * strength * fluid_shape + lesions.pcv_fluid[:, None] * fluid_side
    )
    rpe = bruch - drusen_lift - dome_lift - ped_lift
    outer = rpe - 0.012 - fluid
    ilm = bruch - thickness * (1.0 - pit) - 0.8 * fluid - dome_lift - drusen_lift
    sub_rpe = np.where(classes == PCV, 0.04, np.where(classes == WET, 0.40, 0.30))

    # Reflectivity, with soft boundaries (half a pixel) so small sizes do not alias.
    def above(boundary: np.ndarray) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-(y - boundary[:, None, :]) * size * 2.0))

    t = np.clip((y - ilm[:, None, :]) / (outer - ilm)[:, None, :], 0.0, 1.0)
    retina = 0.10 + sum(a * np.exp(-0.5 * ((t - c) / w) ** 2) for c, a, w in _LAYERS)
    in_ilm, in_outer, in_rpe, in_bruch = (above(b) for b in (ilm, outer, rpe, bruch))
    below_bruch = np.clip(y - bruch[:, None, :], 0.0, None)
    choroid = (0.5 * np.exp(-below_bruch / 0.12)) * (1.0 + 0.35 * _smooth_noise(rng, n, size, 0.02))
    image = (
        0.03 * (1.0 - in_ilm)
        + retina * in_ilm * (1.0 - in_outer)
        + 0.02 * in_outer * (1.0 - in_rpe)
        + sub_rpe[:, None, :] * in_rpe * (1.0 - in_bruch)
        + choroid * in_bruch
        + 0.75 * np.exp(-0.5 * ((y - rpe[:, None, :]) / 0.013) ** 2)
    )

    # Shadows cast by retinal vessels: darker columns below the inner retina.
    shadow = _profiles(rng.uniform(0.0, 1.0, (n, 3)), rng.uniform(0.0, 0.5, (n, 3)), 0.012, size)
    shadow_cols = shadow.sum(axis=1)
    image *= 1.0 - np.clip(shadow_cols[:, None, :], 0.0, 0.6) * above(ilm + 0.03)

    # Acquisition: multiplicative speckle, optical blur, noise floor, display gain.
    look = rng.uniform(3.0, 6.0, (n, 1, 1))
    image *= rng.gamma(look, 1.0 / look, (n, size, size)).astype(np.float32)
    image = _blur(image.astype(np.float32), rng.uniform(0.006, 0.016, n) * size)
    image += np.abs(rng.normal(0.0, 0.03, image.shape))
    gain = rng.uniform(0.9, 1.25, (n, 1, 1))
    return _to_uint8(np.clip(gain * image, 0.0, None) ** 0.8)[:, None]


# ---------------------------------------------------------------------------------------
# Angiography-like map (grey): late-phase hyperfluorescence.


def _render_angio(rng: np.random.Generator, lesions: _Lesions, size: int) -> np.ndarray:
    n = len(lesions.classes)
    g = _grid(size)
    centre = 0.5 + rng.normal(0.0, 0.01, (n, 2))
    r, aperture = _fundus_field(size, centre)
    disc = _disc_centres(rng, n)

    background = 0.22 * (1.0 + 0.15 * _smooth_noise(rng, n, size, 0.02))
    r_fovea = np.sqrt(
        (g[None, None, :] - 0.5) ** 2 + (g[None, :, None] - lesions.y[:, None, None]) ** 2
    )
    background *= 1.0 - 0.6 * np.exp(-0.5 * (r_fovea / 0.05) ** 2)
    image = background + 0.55 * _vessel_tree(rng, n, size, disc)
    d_disc = np.sqrt(
        (g[None, None, :] - disc[:, 0, None, None]) ** 2
        + (g[None, :, None] - disc[:, 1, None, None]) ** 2
    )
    image += 0.25 * np.exp(-0.5 * (d_disc / 0.04) ** 2)

    image += 0.15 * _spots(lesions.drusen_x, lesions.drusen_y, lesions.drusen_amp, 0.012, size)
    leak_amp = (lesions.classes == WET)[:, None] * lesions.strength[:, None]
    image += 0.5 * _spots(
        lesions.x[:, None], lesions.y[:, None], leak_amp, (0.06 * lesions.size)[:, None], size
    )
    image += 0.6 * _spots(lesions.nodule_x, lesions.nodule_y, lesions.nodule_amp, 0.018, size)

    gradient = rng.normal(0.0, 0.3, (n, 2))
    illumination = rng.uniform(0.7, 1.2, (n, 1, 1)) * (
        1.0
        + gradient[:, 0, None, None] * (g[None, None, :] - 0.5)
        + gradient[:, 1, None, None] * (g[None, :, None] - 0.5)
    )
    image = image * illumination + rng.normal(0.0, 0.04, image.shape)
    image = _blur(image.astype(np.float32), rng.uniform(0.004, 0.012, n) * size)
    return _to_uint8(image * aperture)[:, None]
