"""synthetic-retina: procedurally generated fundus + OCT pairs imitating the MMC-AMD task.

The benchmark has to measure three things that real multimodal retina data has, on a laptop
CPU and without a download:

- cross-modal shared evidence: every lesion has one horizontal position (``lesion_x``),
  drawn once per sample and drawn at that column in every modality;
- modality-specific nuisance: fundus tint, illumination and a random vessel tree; OCT
  speckle, vertical position, tilt, curvature, layer thickness, vessel shadows and blur.
  Each modality draws its nuisance from its own random stream, so none is shared;
- one modality more reliable than the other for some classes: the fundus signature of wet
  AMD is faint (and wet eyes may carry a few drusen), while its OCT signature is strong, as
  in the real disease; small drusen are clearer on the fundus than on the OCT.

Disease signatures (lesions lie near the macula, at the centre of the image):

- ``normal``: none.
- ``dry_amd``: drusen, small yellow dots on the fundus and small bumps under the RPE band
  on the OCT, at the same columns.
- ``wet_amd``: a faint dark-red blob on the fundus; a dark fluid pocket above the RPE, over
  a shallow RPE elevation, on the OCT. Half of the wet eyes also have a few drusen.
- ``pcv``: orange-red nodules on the fundus; a sharp dome-shaped RPE detachment with a dark
  space beneath it on the OCT, in half of the eyes with a little fluid beside it.
- third modality (``modalities=3``), angiography-like: bright vessels, dark fovea; wet AMD
  leaks as a diffuse bright blob, PCV nodules are focal hot spots, drusen stain faintly.

Severity scales every lesion's contrast and size; ``difficulty`` divides lesion contrast.
1.0 is the calibrated default that the tests hold: late fusion of two small CNNs reaches
80-95 % test accuracy, each modality alone at least 10 points less, and OCT beats fundus on
wet vs dry AMD (``tests/test_synthetic.py``, 20 epochs). The accuracies measured at this
default, and their spread over training seeds (why the OCT drusen bump is 0.055, not
smaller): results/README.md ("synthetic-retina calibration").
Pure numpy, vectorised over samples, deterministic in ``seed``.
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


@dataclass(frozen=True)
class SyntheticSamples:
    """Generated samples; ``images[m]`` is modality m as uint8 ``(n, CHANNELS[m], H, W)``."""

    images: tuple[np.ndarray, ...]
    labels: np.ndarray  # int64 (n,), the (possibly noisy) labels
    severity: np.ndarray  # float32 (n,), 0 for normal eyes
    lesion_x: np.ndarray  # float32 (n,), horizontal lesion position in [0, 1]


@dataclass(frozen=True)
class _Lesions:
    """Per-sample lesion geometry, shared by all modalities. Arrays are ``(n,)`` or ``(n, K)``.

    Spot amplitudes are relative (0 where absent); every renderer multiplies by ``strength``.
    """

    classes: np.ndarray
    strength: np.ndarray  # lesion contrast: 0 for normal, grows with severity
    x: np.ndarray  # lesion centre (columns), shared by all modalities
    y: np.ndarray  # lesion centre (rows) on the en-face images (fundus, angiography)
    extent: np.ndarray  # size multiplier of the wet blob, fluid pocket and PCV dome
    drusen_x: np.ndarray
    drusen_y: np.ndarray
    drusen_sigma: np.ndarray
    drusen_amp: np.ndarray
    nodule_x: np.ndarray
    nodule_y: np.ndarray
    nodule_amp: np.ndarray
    pcv_fluid: np.ndarray  # relative height of the fluid beside a PCV dome, 0 if none


def generate(
    n: int,
    seed: int,
    image_size: int = 64,
    modalities: int = 2,
    label_noise: float = 0.0,
    difficulty: float = 1.0,
) -> SyntheticSamples:
    """Generate ``n`` samples with ``modalities`` images each (fundus, OCT, angiography).

    Classes are balanced up to one sample and shuffled by ``np.random.default_rng(seed)``.
    ``round(label_noise * n)`` labels are flipped uniformly to another class; the images
    always show the true class. Each modality and the label noise draw from their own child
    stream of the seed, so the images do not depend on ``label_noise`` or ``modalities``.
    """
    check_arguments(n, image_size, modalities, label_noise, difficulty)
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


def check_arguments(
    n: int, image_size: int, modalities: int, label_noise: float, difficulty: float
) -> None:
    """Raise a one-line ConfigError for an argument :func:`generate` cannot use."""
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
            f"label_noise must be in [0, 1), got {label_noise}: "
            "use e.g. 0.1 to flip 10 % of the labels"
        )
    if not difficulty > 0.0:
        raise ConfigError(
            f"difficulty must be positive, got {difficulty}: use 1.0 (default) or more for harder"
        )


def _flip_labels(rng: np.random.Generator, classes: np.ndarray, fraction: float) -> np.ndarray:
    labels = classes.astype(np.int64)
    count = round(fraction * len(labels))
    flipped = rng.choice(len(labels), size=count, replace=False)
    labels[flipped] = (labels[flipped] + rng.integers(1, len(CLASSES), count)) % len(CLASSES)
    return labels


def _draw_lesions(
    rng: np.random.Generator, classes: np.ndarray, severity: np.ndarray, difficulty: float
) -> _Lesions:
    n = len(classes)
    strength = np.where(classes == NORMAL, 0.0, (0.5 + 0.5 * severity) / difficulty)
    x = rng.uniform(0.36, 0.64, n)
    y = 0.5 + rng.normal(0.0, 0.04, n)

    # Dry eyes: 5 to 12 drusen growing with severity; half of the wet eyes: 2 to 4 smaller ones.
    slot = np.arange(MAX_DRUSEN)
    wet_drusen = rng.integers(2, 5, n) * (rng.uniform(0.0, 1.0, n) < 0.5)
    drusen_count = np.where(
        classes == DRY, np.round(5 + 7 * severity), np.where(classes == WET, wet_drusen, 0)
    )
    drusen_amp = (slot < drusen_count[:, None]) * rng.uniform(0.6, 1.0, (n, MAX_DRUSEN))
    drusen_amp[classes == WET] *= 0.7

    nodule_count = rng.integers(1, MAX_NODULES + 1, n)
    nodule_on = (classes == PCV)[:, None] & (np.arange(MAX_NODULES) < nodule_count[:, None])
    nodule_x = x[:, None] + rng.normal(0.0, 0.03, (n, MAX_NODULES))
    nodule_x[:, 0] = x  # the main nodule sits on the dome seen by the OCT

    pcv_fluid = (classes == PCV) * (rng.uniform(0.0, 1.0, n) < 0.5) * rng.uniform(0.3, 0.8, n)
    return _Lesions(
        classes=classes,
        strength=strength,
        x=x,
        y=y,
        extent=0.75 + 0.5 * severity,
        drusen_x=x[:, None] + rng.normal(0.0, 0.06, (n, MAX_DRUSEN)),
        drusen_y=y[:, None] + rng.normal(0.0, 0.06, (n, MAX_DRUSEN)),
        drusen_sigma=rng.uniform(0.018, 0.03, (n, MAX_DRUSEN)),
        drusen_amp=drusen_amp,
        nodule_x=nodule_x,
        nodule_y=y[:, None] + rng.normal(0.0, 0.03, (n, MAX_NODULES)),
        nodule_amp=nodule_on * rng.uniform(0.7, 1.0, (n, MAX_NODULES)),
        pcv_fluid=pcv_fluid,
    )


# ---------------------------------------------------------------------------------------
# Helpers. Coordinates are normalised to [0, 1]: pixel centres at (i + 0.5) / size.
# Images are float32 (n, H, W) or (n, C, H, W) reflectances, roughly in [0, 1].


def _grid(size: int) -> np.ndarray:
    return ((np.arange(size) + 0.5) / size).astype(np.float32)


def _col(a: np.ndarray) -> np.ndarray:
    """A per-sample value as ``(n, 1, 1)`` float32, to broadcast over images."""
    return np.asarray(a, dtype=np.float32).reshape(-1, 1, 1)


def _profiles(cx: np.ndarray, sigma: np.ndarray | float, size: int) -> np.ndarray:
    """1-D Gaussians along one image axis, ``(n, K, size)``, centred at ``cx`` ``(n, K)``."""
    offset = (_grid(size) - cx[..., None]) / np.asarray(sigma)[..., None]
    return np.exp(-0.5 * offset**2).astype(np.float32)


def _spots(
    cx: np.ndarray, cy: np.ndarray, amp: np.ndarray, sigma: np.ndarray | float, size: int
) -> np.ndarray:
    """Sum of Gaussian spots, ``(n, size, size)``, from ``(n, K)`` centres and amplitudes.

    A Gaussian spot is separable, so the sum is one contraction of row and column profiles.
    """
    sigma = np.broadcast_to(np.asarray(sigma, dtype=np.float32), np.shape(cx))
    rows, cols = _profiles(cy, sigma, size), _profiles(cx, sigma, size)
    return np.einsum("nk,nkh,nkw->nhw", amp.astype(np.float32), rows, cols)


def _distance(size: int, centre: np.ndarray) -> np.ndarray:
    """Distance of every pixel to a per-sample point ``(n, 2)`` (x, y), ``(n, size, size)``."""
    g = _grid(size)
    return np.sqrt((g - _col(centre[:, 0])) ** 2 + (g[:, None] - _col(centre[:, 1])) ** 2)


def _smooth_noise(rng: np.random.Generator, n: int, size: int, scale: float) -> np.ndarray:
    """White noise low-passed to correlation length ``scale`` (normalised), unit std."""
    freq = np.fft.fftfreq(size).astype(np.float32) * size  # cycles per image
    f2 = freq[:, None] ** 2 + freq[None, : size // 2 + 1] ** 2
    spectrum = np.fft.rfft2(rng.standard_normal((n, size, size), dtype=np.float32))
    smooth = np.fft.irfft2(spectrum * np.exp(-2.0 * (np.pi * scale) ** 2 * f2), s=(size, size))
    smooth -= smooth.mean(axis=(-2, -1), keepdims=True)
    return (smooth / (smooth.std(axis=(-2, -1), keepdims=True) + 1e-6)).astype(np.float32)


def _blur(images: np.ndarray, sigma_px: np.ndarray) -> np.ndarray:
    """Gaussian blur of ``(n, H, W)`` images, one sigma (pixels) per image, edges reflected."""
    pad = int(np.ceil(3 * sigma_px.max())) + 1
    padded = np.pad(images, ((0, 0), (pad, pad), (pad, pad)), mode="reflect")
    h, w = padded.shape[1:]
    f2 = np.fft.fftfreq(h)[:, None] ** 2 + np.fft.rfftfreq(w)[None, :] ** 2
    kernel = np.exp(-2.0 * np.pi**2 * _col(sigma_px) ** 2 * f2.astype(np.float32))
    blurred = np.fft.irfft2(np.fft.rfft2(padded) * kernel, s=(h, w))
    return blurred[:, pad:-pad, pad:-pad].astype(np.float32)


def _to_uint8(image: np.ndarray) -> np.ndarray:
    return np.round(np.clip(image, 0.0, 1.0) * 255.0).astype(np.uint8)


def _disc_centres(rng: np.random.Generator, n: int) -> np.ndarray:
    """Optic disc centres ``(n, 2)``: left or right of the macula, as in left and right eyes."""
    side = rng.choice([-1.0, 1.0], n)
    return np.stack(
        [0.5 + side * rng.uniform(0.26, 0.31, n), 0.5 + rng.normal(0.0, 0.03, n)], axis=1
    )


def _vessel_tree(rng: np.random.Generator, disc: np.ndarray, size: int) -> np.ndarray:
    """A random vessel tree leaving the optic disc, ``(n, size, size)`` in [0, 1].

    Vessels are curves in polar coordinates around the disc. The four temporal arcades
    leave it upwards and downwards and bend towards the macula, approaching a distance of
    about ``h`` from the horizontal meridian (angle ``arctan(h (1 + r) / r)`` at radius r);
    two vessels run nasally; four thinner branches start away from the disc. All wiggle.
    """
    n = len(disc)
    side = np.sign(0.5 - disc[:, 0])  # +1: the macula lies right of the disc
    g = _grid(size)
    du = (g - _col(disc[:, 0])) * _col(side)
    dv = g[:, None] - _col(disc[:, 1])
    radius = np.sqrt(du**2 + dv**2)
    angle = np.arctan2(dv, du)  # 0 points at the macula
    fade = np.clip((0.75 - radius) / 0.2, 0.0, 1.0) * np.clip(radius / 0.04, 0.0, 1.0)
    taper = np.clip(1.0 - 0.9 * radius, 0.3, 1.0)

    kind = np.array([0, 0, 0, 0, 1, 1, 2, 2, 2, 2])  # arcade, nasal, branch
    up = np.where(np.arange(len(kind)) % 2 == 0, 1.0, -1.0)
    shape = (n, len(kind))
    height = rng.uniform(0.13, 0.22, shape)
    start_angle = np.where(
        kind == 1, up * rng.uniform(2.2, 2.9, shape), rng.uniform(-np.pi, np.pi, shape)
    )
    drift = np.where(kind == 2, rng.normal(0.0, 1.5, shape), rng.normal(0.0, 0.3, shape))
    start_radius = np.where(kind == 2, rng.uniform(0.08, 0.3, shape), 0.0)
    width = np.where(kind == 2, 0.007, rng.uniform(0.011, 0.016, shape))
    wiggle = rng.uniform(0.02, 0.08, shape)
    wiggle_freq = rng.uniform(8.0, 20.0, shape)
    phase = rng.uniform(0.0, 2 * np.pi, shape)
    darkness = rng.uniform(0.4, 0.8, shape)

    arcade_ratio = (1.0 + radius) / np.maximum(radius, 1e-4)
    scale = radius / taper
    tree = np.zeros((n, size, size), dtype=np.float32)
    for k in range(len(kind)):  # in place: this loop is most of the fundus time
        if kind[k] == 0:
            course = np.arctan(_col(height[:, k]) * arcade_ratio)
            course *= up[k]
        else:
            course = _col(drift[:, k]) * radius
            course += _col(start_angle[:, k])
        wiggling = np.sin(_col(wiggle_freq[:, k]) * radius + _col(phase[:, k]))
        wiggling *= _col(wiggle[:, k])
        course += wiggling
        offset = np.subtract(angle + np.float32(np.pi), course, out=course)
        np.remainder(offset, np.float32(2 * np.pi), out=offset)
        offset -= np.float32(np.pi)  # the angle to the vessel, wrapped to [-pi, pi)
        offset *= scale
        offset *= _col(1.0 / width[:, k])
        np.square(offset, out=offset)
        offset *= np.float32(-0.5)
        profile = np.exp(offset, out=offset)
        profile *= fade
        profile *= radius > _col(start_radius[:, k])
        profile *= _col(darkness[:, k])
        tree += profile
    return np.clip(tree, 0.0, 1.0)


def _drusen(lesions: _Lesions, size: int) -> np.ndarray:
    """Drusen field on the en-face images, ``(n, size, size)``; overlaps saturate at 1."""
    spots = _spots(
        lesions.drusen_x, lesions.drusen_y, lesions.drusen_amp, lesions.drusen_sigma, size
    )
    return 1.0 - np.exp(-1.5 * spots)


def _camera(rng: np.random.Generator, n: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Illumination (vignetting, brightness, a random gradient) times the round aperture."""
    g = _grid(size)
    r = _distance(size, 0.5 + rng.normal(0.0, 0.01, (n, 2)))
    gradient = rng.normal(0.0, 0.15, (n, 2))
    illumination = (
        _col(rng.uniform(0.9, 1.1, n))
        * (1.0 - _col(rng.uniform(0.6, 0.9, n)) * r**2)
        * (1.0 + _col(gradient[:, 0]) * (g - 0.5) + _col(gradient[:, 1]) * (g[:, None] - 0.5))
    )
    aperture = np.clip((0.47 - r) * size / 1.5, 0.0, 1.0)
    return illumination * aperture, aperture


# ---------------------------------------------------------------------------------------
# Fundus photograph (RGB).


def _rgb(values: list[float]) -> np.ndarray:
    return np.array(values, dtype=np.float32)[None, :, None, None]


def _render_fundus(rng: np.random.Generator, lesions: _Lesions, size: int) -> np.ndarray:
    n = len(lesions.classes)
    strength = _col(lesions.strength)[:, None]  # (n, 1, 1, 1)

    # Orange-red fundus with a per-eye tint, choroidal texture and the darker macula.
    tint = np.exp(rng.normal(0.0, [0.03, 0.05, 0.06], (n, 3))).astype(np.float32)
    texture = 1.0 + 0.04 * _smooth_noise(rng, n, size, 0.03)
    macula_centre = np.stack([np.full(n, 0.5), lesions.y], axis=1)
    macula = 1.0 - _col(rng.uniform(0.15, 0.3, n)) * np.exp(
        -0.5 * (_distance(size, macula_centre) / 0.09) ** 2
    )
    rgb = _rgb([0.80, 0.36, 0.16]) * tint[:, :, None, None] * (texture * macula)[:, None]

    # Lesions: yellow drusen, a faint dark-red blob (wet), orange-red nodules (PCV).
    rgb += _rgb([0.40, 0.40, 0.14]) * strength * _drusen(lesions, size)[:, None]
    blob = _spots(
        lesions.x[:, None],
        lesions.y[:, None],
        (lesions.classes == WET)[:, None],
        (0.055 * lesions.extent)[:, None],
        size,
    )
    rgb *= 1.0 - _rgb([0.06, 0.15, 0.15]) * strength * blob[:, None]
    nodules = _spots(lesions.nodule_x, lesions.nodule_y, lesions.nodule_amp, 0.04, size)
    rgb += _rgb([0.55, 0.12, 0.0]) * strength * nodules[:, None]

    # Dark-red vessels, then the bright yellow optic disc with its paler cup.
    disc = _disc_centres(rng, n)
    vessels = _vessel_tree(rng, disc, size)[:, None]
    rgb *= 1.0 - _rgb([0.30, 0.60, 0.55]) * vessels
    d_disc = _distance(size, disc)
    disc_radius = _col(rng.uniform(0.055, 0.07, n))
    on_disc = np.clip((disc_radius - d_disc) * size / 1.5, 0.0, 1.0)[:, None]
    cup = np.exp(-0.5 * (d_disc / (0.5 * disc_radius)) ** 2)[:, None]
    disc_rgb = _rgb([0.98, 0.82, 0.55]) * (0.85 + 0.15 * cup) * (1.0 - 0.4 * vessels)
    rgb = rgb * (1.0 - on_disc) + disc_rgb * on_disc

    light, aperture = _camera(rng, n, size)
    rgb *= light[:, None]
    rgb += 0.012 * rng.standard_normal(rgb.shape, dtype=np.float32) * aperture[:, None]
    return _to_uint8(rgb)


# ---------------------------------------------------------------------------------------
# OCT B-scan (grey): one horizontal scan through the macula and the lesion. Rows are depth.

# Retinal layers between the inner limiting membrane (t = 0) and the photoreceptor tips
# (t = 1): (centre, reflectivity, width) of RNFL, GCL + IPL, OPL, ellipsoid zone.
_LAYERS = ((0.03, 0.55, 0.06), (0.22, 0.25, 0.10), (0.48, 0.30, 0.035), (0.90, 0.50, 0.03))


def _render_oct(rng: np.random.Generator, lesions: _Lesions, size: int) -> np.ndarray:
    n = len(lesions.classes)
    x = _grid(size)[None, :]  # (1, W)
    depth = _grid(size)[None, :, None]  # (1, H, 1)
    classes = lesions.classes[:, None]
    strength = lesions.strength[:, None]
    lx = lesions.x[:, None]
    extent = lesions.extent[:, None]

    # Healthy geometry, per column (n, W): Bruch's membrane with position, tilt and
    # curvature; retinal thickness; the foveal pit at the macula.
    bruch = (
        rng.uniform(0.61, 0.65, (n, 1))
        + rng.uniform(-0.08, 0.08, (n, 1)) * (x - 0.5)
        - rng.uniform(0.0, 0.25, (n, 1)) * (x - 0.5) ** 2
    )
    thickness = rng.uniform(0.24, 0.30, (n, 1))
    fovea = 0.5 + rng.normal(0.0, 0.03, (n, 1))
    pit = rng.uniform(0.45, 0.65, (n, 1)) * np.exp(-0.5 * ((x - fovea) / 0.06) ** 2)

    # Lesions: RPE lifted by drusen, by a PCV dome or by a shallow PED under wet AMD;
    # fluid above the RPE (wet AMD, and beside some PCV domes) lifts the retina.
    drusen = _profiles(lesions.drusen_x, lesions.drusen_sigma, size)
    drusen_lift = 0.055 * strength * (lesions.drusen_amp[..., None] * drusen).max(axis=1)
    dome = np.sqrt(np.clip(1.0 - ((x - lx) / (0.05 * extent)) ** 2, 0.0, None))
    dome_lift = (classes == PCV) * 0.085 * strength * dome
    ped = np.clip(1.0 - ((x - lx) / (0.10 * extent)) ** 2, 0.0, None)
    ped_lift = (classes == WET) * 0.025 * strength * ped
    pocket = np.clip(1.0 - ((x - lx) / (0.12 * extent)) ** 2, 0.0, None) ** 0.6
    beside = np.clip(1.0 - ((x - lx - 0.07) / 0.07) ** 2, 0.0, None) ** 0.6
    fluid = 0.13 * strength * ((classes == WET) * pocket + lesions.pcv_fluid[:, None] * beside)
    rpe = bruch - drusen_lift - dome_lift - ped_lift
    outer = rpe - 0.012 - fluid
    ilm = bruch - thickness * (1.0 - pit) - 0.8 * fluid - dome_lift - drusen_lift
    # What fills the space between the lifted RPE and Bruch's membrane.
    sub_rpe = np.where(classes == PCV, 0.04, np.where(classes == WET, 0.40, 0.30))
    ilm, outer, rpe, bruch, sub_rpe = (
        a.astype(np.float32) for a in np.broadcast_arrays(ilm, outer, rpe, bruch, sub_rpe)
    )

    def below(boundary: np.ndarray) -> np.ndarray:
        """Soft (half a pixel) indicator of lying below a per-column boundary."""
        return 0.5 + 0.5 * np.tanh((depth - boundary[:, None, :]) * size)

    t = np.clip((depth - ilm[:, None, :]) / (outer - ilm)[:, None, :], 0.0, 1.0)
    retina = 0.10 + sum(a * np.exp(-0.5 * ((t - c) / w) ** 2) for c, a, w in _LAYERS)
    in_ilm, in_outer, in_rpe, in_bruch = (below(b) for b in (ilm, outer, rpe, bruch))
    under_bruch = np.clip(depth - bruch[:, None, :], 0.0, None)
    choroid = 0.5 * np.exp(-under_bruch / 0.12) * (1.0 + 0.35 * _smooth_noise(rng, n, size, 0.02))
    image = (
        0.03 * (1.0 - in_ilm)
        + retina * in_ilm * (1.0 - in_outer)
        + 0.02 * in_outer * (1.0 - in_rpe)
        + sub_rpe[:, None, :] * in_rpe * (1.0 - in_bruch)
        + choroid * in_bruch
        + 0.75 * np.exp(-0.5 * ((depth - rpe[:, None, :]) / 0.013) ** 2)
    )

    # Retinal vessels shadow the columns below them.
    shadow = rng.uniform(0.0, 0.5, (n, 3))[..., None] * _profiles(
        rng.uniform(0.0, 1.0, (n, 3)), 0.012, size
    )
    image *= 1.0 - np.clip(shadow.sum(axis=1), 0.0, 0.6)[:, None, :] * below(ilm + 0.03)

    # Acquisition: multiplicative speckle, optical blur, noise floor, display gain.
    look = _col(rng.uniform(3.0, 6.0, n))
    image = image * rng.gamma(look, 1.0 / look, (n, size, size)).astype(np.float32)
    image = _blur(image, rng.uniform(0.006, 0.016, n) * size)
    image += 0.03 * np.abs(rng.standard_normal(image.shape, dtype=np.float32))
    image = np.clip(_col(rng.uniform(0.9, 1.25, n)) * image, 0.0, None) ** 0.8
    return _to_uint8(image)[:, None]


# ---------------------------------------------------------------------------------------
# Angiography-like map (grey): late-phase hyperfluorescence.


def _render_angio(rng: np.random.Generator, lesions: _Lesions, size: int) -> np.ndarray:
    n = len(lesions.classes)
    strength = _col(lesions.strength)

    fovea = np.stack([np.full(n, 0.5), lesions.y], axis=1)
    background = 0.22 * (1.0 + 0.15 * _smooth_noise(rng, n, size, 0.02))
    background *= 1.0 - 0.6 * np.exp(-0.5 * (_distance(size, fovea) / 0.05) ** 2)
    disc = _disc_centres(rng, n)
    image = background + 0.55 * _vessel_tree(rng, disc, size)
    image += 0.25 * np.exp(-0.5 * (_distance(size, disc) / 0.04) ** 2)

    leak = _spots(
        lesions.x[:, None],
        lesions.y[:, None],
        (lesions.classes == WET)[:, None],
        (0.06 * lesions.extent)[:, None],
        size,
    )
    hot_spots = _spots(lesions.nodule_x, lesions.nodule_y, lesions.nodule_amp, 0.025, size)
    image += strength * (0.15 * _drusen(lesions, size) + 0.5 * leak + 0.6 * hot_spots)

    light, aperture = _camera(rng, n, size)
    image = image * light + 0.04 * rng.standard_normal(image.shape, dtype=np.float32) * aperture
    image = _blur(image, rng.uniform(0.004, 0.012, n) * size)
    return _to_uint8(image)[:, None]
