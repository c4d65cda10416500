"""MR physics of the synthetic cohort: tissue relaxation, signal equations, noise and artefacts.

Image quality depends on the acquisition the way it does on a scanner, so that later analyses
(mixed-effects models of Dice against TE, field strength, voxel size) can recover real effects:

* signal: spin echo ``PD (1 - exp(-TR/T1)) exp(-TE/T2)`` or spoiled gradient echo
  ``PD sin(a) (1 - E1) / (1 - cos(a) E1) exp(-TE/T2*)``, with T1 lengthening with field strength;
* noise: Gaussian in the complex image, so magnitudes are Rician. Its standard deviation is set
  relative to the sequence's muscle signal at TE = 0 and scales with 1 / SNR, where SNR is
  proportional to voxel volume x sqrt(phase encodes (x partitions in 3D)) x field strength. A
  longer TE lowers the tissue signal but not the noise, so contrast-to-noise falls with TE;
  smaller voxels and lower fields are noisier;
* a smooth multiplicative bias field (receive-coil shading);
* partial volume: the signal is rendered on a finer grid and averaged down;
* undersampling: Cartesian k-space lines dropped (centre kept), zero-filled reconstruction.
"""
from __future__ import annotations

import numpy as np

# T1 at 3 T (ms), T2 (ms), proton density (relative). T2 of cartilage comes from its map.
TISSUES: dict[str, tuple[float, float, float]] = {
    "air": (1.0, 1.0, 0.0),
    "fat": (380.0, 110.0, 0.95),
    "muscle": (1420.0, 35.0, 0.75),
    "soft_tissue": (1100.0, 55.0, 0.7),
    "cartilage": (1200.0, 35.0, 0.72),
    "meniscus": (1050.0, 10.0, 0.5),
    "marrow": (480.0, 65.0, 0.85),
    "cortical_bone": (1000.0, 1.0, 0.05),
    "cortical_bone_thick": (900.0, 8.0, 0.25),  # thin scapular plate: cortex with some marrow
    "fluid": (3500.0, 700.0, 1.0),
    "disc": (1200.0, 110.0, 0.85),
    "nerve": (1100.0, 75.0, 0.8),
}
NOISE_CONSTANT = 0.6  # relative noise at unit SNR factor (calibrated: muscle SNR ~ 20-40)


def t1_at_field(t1_3t_ms: np.ndarray | float, field_strength_t: float) -> np.ndarray | float:
    """T1 lengthens with field strength (roughly B0^(1/3) in soft tissue)."""
    return t1_3t_ms * (field_strength_t / 3.0) ** (1.0 / 3.0)


def signal(pd: np.ndarray, t1_ms: np.ndarray, t2_ms: np.ndarray, *, sequence: str, te_ms: float,
           tr_ms: float, flip_angle_deg: float) -> np.ndarray:
    """Steady-state magnitude signal of a spin-echo ("FSE") or spoiled gradient-echo ("GRE") scan."""
    t1 = np.maximum(t1_ms, 1e-3)
    t2 = np.maximum(t2_ms, 1e-3)
    if sequence == "FSE":
        return pd * (1.0 - np.exp(-tr_ms / t1)) * np.exp(-te_ms / t2)
    if sequence == "GRE":
        a = np.deg2rad(flip_angle_deg)
        e1 = np.exp(-tr_ms / t1)
        return pd * np.sin(a) * (1.0 - e1) / (1.0 - np.cos(a) * e1) * np.exp(-te_ms / (0.7 * t2))
    raise ValueError(f"unknown sequence {sequence!r}")


def snr_factor(voxel_mm: tuple[float, float, float], n_phase: int, n_partitions: int,
               acquisition: str, field_strength_t: float) -> float:
    """Relative SNR: voxel volume x sqrt(encodes) x B0 (3D adds the partition encodes)."""
    encodes = n_phase * (n_partitions if acquisition == "3D" else 1)
    return float(np.prod(voxel_mm) * np.sqrt(encodes) * field_strength_t / 3.0)


def noise_sigma(*, sequence: str, te_ms: float, tr_ms: float, flip_angle_deg: float,
                field_strength_t: float, snr: float) -> float:
    """Noise SD: the sequence's muscle signal at TE = 0 divided by the SNR factor."""
    t1, _, pd = TISSUES["muscle"]
    ref = signal(np.float64(pd), np.float64(t1_at_field(t1, field_strength_t)), np.float64(1e9),
                 sequence=sequence, te_ms=0.0, tr_ms=tr_ms, flip_angle_deg=flip_angle_deg)
    return float(NOISE_CONSTANT * ref / snr)


def bias_field(shape: tuple[int, int, int], rng: np.random.Generator, amplitude: float = 0.15) -> np.ndarray:
    """Smooth multiplicative shading: exp of a random low-order polynomial, mean about 1."""
    axes = [np.linspace(-1.0, 1.0, n) for n in shape]
    g = np.meshgrid(*axes, indexing="ij", sparse=True)
    c = rng.normal(0.0, 1.0, size=9)
    poly = (c[0] * g[0] + c[1] * g[1] + c[2] * g[2] + c[3] * g[0] * g[1] + c[4] * g[1] * g[2]
            + c[5] * g[0] * g[2] + c[6] * g[0] ** 2 + c[7] * g[1] ** 2 + c[8] * g[2] ** 2)
    poly = poly / (np.abs(poly).max() + 1e-9)
    return np.exp(amplitude * poly).astype(np.float32)


def block_mean(fine: np.ndarray, factor: int) -> np.ndarray:
    """Average ``factor**3`` sub-voxels into each voxel (partial volume)."""
    if factor == 1:
        return fine
    s = fine.shape
    return fine.reshape(s[0] // factor, factor, s[1] // factor, factor, s[2] // factor, factor).mean(axis=(1, 3, 5))


def add_rician_noise(image: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Magnitude of the image plus complex Gaussian noise (Rician statistics)."""
    re = image + rng.normal(0.0, sigma, image.shape)
    im = rng.normal(0.0, sigma, image.shape)
    return np.hypot(re, im).astype(np.float32)


def undersample(image: np.ndarray, sigma: float, factor: int, rng: np.random.Generator,
                phase_axes: tuple[int, int] = (1, 2), centre_radius: float = 0.1) -> np.ndarray:
    """3D Cartesian undersampling over both phase-encode axes, zero-filled reconstruction.

    As in accelerated 3D fast spin echo (CUBE), k-space is undersampled across the two phase
    directions (ky, kz) with a variable-density random mask: a fully sampled centre ellipse and
    a sampling probability falling off towards the edge, scaled so 1/``factor`` of the lines are
    kept. Noise is added before sampling (same image-domain SD as a full scan). The magnitude of
    the inverse transform shows the blur and incoherent aliasing of accelerated scans.
    """
    a0, a1 = phase_axes
    n0, n1 = image.shape[a0], image.shape[a1]
    k0 = np.linspace(-1.0, 1.0, n0)[:, None]
    k1 = np.linspace(-1.0, 1.0, n1)[None, :]
    r = np.sqrt(k0**2 + k1**2) / np.sqrt(2.0)
    density = (1.0 - r) ** 4
    centre = r < centre_radius
    budget = max(0.0, n0 * n1 / factor - centre.sum())
    prob = np.clip(density / density[~centre].sum() * budget, 0.0, 1.0)
    keep = centre | (rng.random((n0, n1)) < prob)
    noisy = image + rng.normal(0, sigma, image.shape) + 1j * rng.normal(0, sigma, image.shape)
    k = np.fft.fftshift(np.fft.fftn(noisy, axes=phase_axes), axes=phase_axes)
    shape = [1, 1, 1]
    shape[a0], shape[a1] = n0, n1
    k = k * keep.reshape(shape)
    recon = np.fft.ifftn(np.fft.ifftshift(k, axes=phase_axes), axes=phase_axes)
    return np.abs(recon).astype(np.float32)


def compartment_map(mask: np.ndarray, truth_ms: float, rng: np.random.Generator,
                    spatial_sd_ms: float = 3.0, voxel_sd_ms: float = 1.5) -> np.ndarray:
    """Relaxation values (ms) for the voxels of one compartment: a smooth random pattern plus
    voxel scatter, re-centred so that their mean is exactly ``truth_ms`` (the stored truth)."""
    from scipy.ndimage import gaussian_filter

    smooth = gaussian_filter(rng.normal(0.0, 1.0, mask.shape), sigma=2.0)
    smooth = smooth / (smooth[mask].std() + 1e-9) * spatial_sd_ms
    values = smooth[mask] + rng.normal(0.0, voxel_sd_ms, int(mask.sum()))
    return (values - values.mean() + truth_ms).astype(np.float32)
