"""Analytic 3D anatomy of the cohort: knee, lumbar spine (sagittal and axial), thigh, hip, shoulder.

Each model paints *structures* (named regions with an MR tissue type) into world coordinates
(RAS, millimetres) with a painter's rule: later structures overwrite earlier ones. Labels of a
dataset are unions of structures (``LABEL_STRUCTURES``), so one knee model serves the CUBE, DESS
and MAPSS label sets. Shapes are chosen so that each biomarker has an exact true value:
cartilage is an annulus around a cylindrical condyle, a flat slab on the tibial plateau and an
offset of a capsule on the patella (constant thickness by construction); discs are
super-ellipses whose extent along the spine axis is the disc height.

Subject variation follows the demographics (``sample_params``): cartilage thins with age and is
thicker in men, muscles grow with weight and male sex, discs lose height with age, fat grows
with BMI. The sampled parameters are the ground truth stored with the cohort.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

SPINE_LEVELS = ("L1", "L2", "L3", "L4", "L5")  # lumbar levels drawn by the spine models
SPINE_DISCS = ("L1_L2", "L2_L3", "L3_L4", "L4_L5", "L5_S1")

Array = np.ndarray
Structures = list[tuple[str, str]]  # (structure name, tissue type)


# ----------------------------------------------------------------------------- primitives
def _ellipse(a: Array, b: Array, ra: float, rb: float) -> Array:
    return (a / ra) ** 2 + (b / rb) ** 2 < 1.0


def _seg_dist(y: Array, z: Array, p0: tuple[float, float], p1: tuple[float, float]) -> Array:
    """Distance in the (y, z) plane from points to the segment p0-p1."""
    dy, dz = p1[0] - p0[0], p1[1] - p0[1]
    t = ((y - p0[0]) * dy + (z - p0[1]) * dz) / (dy * dy + dz * dz)
    t = np.clip(t, 0.0, 1.0)
    return np.hypot(y - (p0[0] + t * dy), z - (p0[1] + t * dz))


def _seg_dist3(x: Array, y: Array, z: Array, p0: tuple, p1: tuple) -> Array:
    """Distance in 3D from points to the segment p0-p1 (for capsules)."""
    d = np.subtract(p1, p0, dtype=float)
    t = ((x - p0[0]) * d[0] + (y - p0[1]) * d[1] + (z - p0[2]) * d[2]) / float(d @ d)
    t = np.clip(t, 0.0, 1.0)
    return np.sqrt((x - p0[0] - t * d[0]) ** 2 + (y - p0[1] - t * d[1]) ** 2 + (z - p0[2] - t * d[2]) ** 2)


def _superellipse(a: Array, b: Array, ra: float, rb: float, power: float = 8.0) -> Array:
    return np.abs(a / ra) ** power + np.abs(b / rb) ** power


class Painter:
    """Paints structures into an int16 volume in order; index 0 is air."""

    def __init__(self, shape: tuple[int, ...], structures: Structures):
        self.index = {name: i + 1 for i, (name, _) in enumerate(structures)}
        self.out = np.zeros(shape, dtype=np.int16)

    def __call__(self, name: str, region: Array) -> None:
        self.out[region] = self.index[name]


# ----------------------------------------------------------------------------- knee
KNEE_STRUCTURES: Structures = [
    ("fat", "fat"), ("muscle", "muscle"), ("joint_fluid", "fluid"), ("tibia", "marrow"),
    ("tc_lat", "cartilage"), ("tc_med", "cartilage"), ("men_lat", "meniscus"),
    ("men_med", "meniscus"), ("femur", "marrow"), ("fc_lat", "cartilage"), ("fc_med", "cartilage"),
    ("patella", "marrow"), ("pc", "cartilage"),
]


def paint_knee(x: Array, y: Array, z: Array, p: dict) -> Array:
    """Right knee, joint line at z = 0; condyles are a cylinder along x (sagittal circles)."""
    paint = Painter(x.shape, KNEE_STRUCTURES)
    R, tfc, ttc, tpc = p["condyle_radius_mm"], p["femoral_thickness_mm"], p["tibial_thickness_mm"], p["patellar_thickness_mm"]
    half_w, notch = p["knee_width_mm"] / 2.0, p["notch_half_width_mm"]
    zc = R + tfc  # femoral cartilage touches the tibial cartilage at the joint line z = 0
    paint("fat", _ellipse(x, y, half_w + 22.0, 58.0))
    paint("muscle", _ellipse(x, y, half_w + 16.0, 52.0) & ((y < -20.0) | (z > zc + 35.0) | (z < -45.0)))
    plateau_y = 1.15 * R
    paint("joint_fluid", (z > -ttc) & (z < 6.0) & _ellipse(x, y, half_w, plateau_y))
    # tibia: broad plateau, narrower shaft below
    tib = (z < -ttc) & np.where(z > -22.0, _ellipse(x, y, half_w, plateau_y),
                                _ellipse(x, y, 0.45 * half_w * 2 / 2 + 8.0, 0.75 * R))
    paint("tibia", tib)
    # tibial cartilage: slab of exact thickness ttc on each compartment's central plateau
    for side, sign in (("lat", 1.0), ("med", -1.0)):
        cx = sign * half_w / 2.0
        q = np.sqrt(((x - cx) / (half_w / 2.0 - 1.0)) ** 2 + (y / (plateau_y - 2.0)) ** 2)
        slab = (z >= -ttc) & (z < 0.0) & (q < p["meniscus_inner_q"] + 0.1) & (sign * x > notch)
        paint(f"tc_{side}", slab)
        men = (q >= p["meniscus_inner_q"]) & (q < 1.0) & (z >= -ttc) & (sign * x > notch - 2.0)
        men &= z < -ttc + p["meniscus_height_mm"] * (q - p["meniscus_inner_q"]) / (1.0 - p["meniscus_inner_q"])
        paint(f"men_{side}", men)
    # femur: condyle cylinder along x with a posterior intercondylar notch, shaft above
    r = np.hypot(y, z - zc)
    in_width = np.abs(x) < half_w
    notch_region = (y < 0.0) & (np.abs(x) < notch) & (z < zc)
    femur = ((r < R) & in_width & ~notch_region) | ((z >= zc) & _ellipse(x, y - 0.15 * R, 0.42 * half_w * 2 / 2 + 6.0, 0.62 * R))
    paint("femur", femur)
    shell = (r >= R) & (r < R + tfc) & in_width & ~notch_region & (z < zc + 0.25 * R)
    paint("fc_lat", shell & (x >= 0.0))
    paint("fc_med", shell & (x < 0.0))
    # patella: capsule (segment + radius) anterior to the trochlea; cartilage on its posterior face
    a, L = p["patella_half_thickness_mm"], p["patella_half_length_mm"]
    yp = R + tfc + 2.0 + tpc + a
    zp = zc + 0.3 * R
    d = _seg_dist(y, z, (yp, zp - L), (yp, zp + L))
    in_px = np.abs(x) < p["patella_half_width_mm"]
    paint("patella", (d < a) & in_px)
    paint("pc", (d >= a) & (d < a + tpc) & (y < yp) & in_px)
    return paint.out


# ----------------------------------------------------------------------------- spine, sagittal
SPINE_SAG_STRUCTURES: Structures = (
    [("fat", "fat"), ("soft_tissue", "soft_tissue"), ("back_muscle", "muscle"), ("csf", "fluid"),
     ("posterior_elements", "marrow"), ("S1", "marrow")]
    + [(f"vb_{lv}", "marrow") for lv in SPINE_LEVELS]
    + [(f"disc_{d}", "disc") for d in SPINE_DISCS]
)


def spine_column_geometry(p: dict) -> list[dict]:
    """Centres, axis directions and sizes of S1, the discs and L5..L1, stacked with lordosis."""
    pos = np.array([p["column_y_mm"], p["s1_top_z_mm"]])
    ang = np.deg2rad(p["sacral_tilt_deg"])  # angle of the column axis from +z towards +y
    dv, hv = p["body_depth_mm"], p["body_height_mm"]
    parts = []
    u = np.array([np.sin(ang), np.cos(ang)])
    parts.append({"name": "S1", "center": pos - u * hv / 2.0, "u": u, "depth": dv, "height": hv})
    for disc, level in zip(reversed(SPINE_DISCS), reversed(SPINE_LEVELS)):
        u = np.array([np.sin(ang), np.cos(ang)])
        h = p["disc_height_mm"][disc]
        parts.append({"name": f"disc_{disc}", "center": pos + u * h / 2.0, "u": u, "depth": 0.96 * dv, "height": h})
        pos = pos + u * h
        parts.append({"name": f"vb_{level}", "center": pos + u * hv / 2.0, "u": u, "depth": dv, "height": hv})
        pos = pos + u * hv
        ang -= np.deg2rad(p["lordosis_step_deg"])
    return parts


def paint_spine_sagittal(x: Array, y: Array, z: Array, p: dict) -> Array:
    paint = Painter(x.shape, SPINE_SAG_STRUCTURES)
    paint("fat", _ellipse(x, y + 15.0, 150.0, 125.0))
    inner = _ellipse(x, y + 15.0, 150.0 - p["fat_mm"], 125.0 - p["fat_mm"])
    paint("soft_tissue", inner)
    cy = p["column_y_mm"]
    paint("back_muscle", inner & (y < cy - p["body_depth_mm"] / 2.0 - 12.0) & (np.abs(x) < 70.0))
    half_x = p["body_half_width_mm"]
    for part in spine_column_geometry(p):
        u = part["u"]
        v = np.array([u[1], -u[0]])  # in-plane normal, pointing anterior
        dy, dz = y - part["center"][0], z - part["center"][1]
        a = dy * v[0] + dz * v[1]  # anterior-posterior coordinate in the body frame
        b = dy * u[0] + dz * u[1]  # along the column axis
        shape = _superellipse(a, b, part["depth"] / 2.0, part["height"] / 2.0) < 1.0 - (x / half_x) ** 2
        # canal and posterior elements behind each body/disc
        behind = (b > -part["height"] / 2.0) & (b < part["height"] / 2.0)
        paint("csf", behind & (a < -part["depth"] / 2.0 - 1.0) & (a > -part["depth"] / 2.0 - 14.0) & (np.abs(x) < 9.0))
        if part["name"].startswith(("vb_", "S1")):
            paint("posterior_elements", behind & (a <= -part["depth"] / 2.0 - 14.0)
                  & (a > -part["depth"] / 2.0 - 48.0) & (np.abs(x) < 6.0))
        paint(part["name"], shape)
    return paint.out


# ----------------------------------------------------------------------------- spine, axial
SPINE_AX_MUSCLE_STRUCTURES: Structures = [
    ("fat", "fat"), ("soft_tissue", "soft_tissue"), ("erector_spinae", "muscle"),
    ("multifidus", "muscle"), ("psoas", "muscle"), ("quadratus_lumborum", "muscle"),
    ("vertebra", "marrow"), ("csf", "fluid"), ("posterior_elements", "marrow"),
]


def _torso(paint: Painter, x: Array, y: Array, p: dict) -> None:
    paint("fat", _ellipse(x, y + 10.0, p["torso_half_width_mm"], p["torso_half_depth_mm"]))
    paint("soft_tissue", _ellipse(x, y + 10.0, p["torso_half_width_mm"] - p["fat_mm"], p["torso_half_depth_mm"] - p["fat_mm"]))


def paint_spine_axial_muscle(x: Array, y: Array, z: Array, p: dict) -> Array:
    """Axial lumbar section (L3-L5): paired psoas, quadratus lumborum, erector spinae, multifidus."""
    paint = Painter(x.shape, SPINE_AX_MUSCLE_STRUCTURES)
    _torso(paint, x, y, p)
    m = p["muscle_scale"]
    caudal = 1.0 + 0.25 * np.clip((-z) / 50.0, -1.0, 1.0)  # psoas grows caudally
    for sign in (1.0, -1.0):
        paint("erector_spinae", _ellipse(x - sign * 33.0 * m, y + 72.0, 22.0 * m, 17.0 * m))
        paint("multifidus", _ellipse(x - sign * 12.0 * m, y + 78.0, 9.0 * m, 14.0 * m))
        paint("psoas", _ellipse(x - sign * 38.0, y + 12.0, 13.0 * m * caudal, 16.0 * m * caudal))
        paint("quadratus_lumborum", _ellipse(x - sign * (56.0 + 12.0 * m), y + 45.0, 15.0 * m, 8.0 * m))
    paint("vertebra", _ellipse(x, y + 18.0, 23.0, 17.0))
    paint("csf", _ellipse(x, y + 50.0, 9.0, 8.0))
    paint("posterior_elements", ((np.abs(x) < 3.5) & (y < -60.0) & (y > -92.0)) | ((np.abs(y + 58.0) < 4.0) & (np.abs(x) < 14.0)))
    return paint.out


SPINE_AX_DISC_STRUCTURES: Structures = [
    ("fat", "fat"), ("soft_tissue", "soft_tissue"), ("muscle", "muscle"), ("vertebra", "marrow"),
    ("disc", "disc"), ("csf", "fluid"), ("posterior_elements", "marrow"), ("nerve", "nerve"),
]


def paint_spine_axial_disc(x: Array, y: Array, z: Array, p: dict) -> Array:
    """Axial stack through one motion segment: vertebra, disc (|z| < h/2), vertebra; nerve roots."""
    paint = Painter(x.shape, SPINE_AX_DISC_STRUCTURES)
    _torso(paint, x, y, p)
    for sign in (1.0, -1.0):
        paint("muscle", _ellipse(x - sign * 30.0, y + 70.0, 22.0 * p["muscle_scale"], 17.0 * p["muscle_scale"]))
        paint("muscle", _ellipse(x - sign * 36.0, y + 8.0, 12.0 * p["muscle_scale"], 14.0 * p["muscle_scale"]))
    h = p["disc_height_mm"]
    body = _ellipse(x, y + 10.0, 24.0, 17.0)
    paint("vertebra", body & (np.abs(z) >= h / 2.0))
    paint("disc", body & (np.abs(z) < h / 2.0))
    paint("csf", _ellipse(x, y + 38.0, 10.0, 8.0))
    paint("posterior_elements", ((np.abs(x) < 4.0) & (y < -50.0) & (y > -82.0)) & (np.abs(z) >= h / 2.0 + 4.0))
    for sign in (1.0, -1.0):  # exiting nerve roots, running obliquely down and out
        paint("nerve", np.hypot(x - sign * (13.0 - 0.08 * z), y + 40.0) < p["nerve_radius_mm"])
    return paint.out


# ----------------------------------------------------------------------------- thigh
THIGH_STRUCTURES: Structures = [
    ("subcutaneous_fat", "fat"), ("septa", "fat"), ("extensors", "muscle"), ("hamstrings", "muscle"),
    ("adductors", "muscle"), ("sartorius", "muscle"), ("gracilis", "muscle"),
    ("nerve_bundle", "nerve"), ("femoral_cortex", "cortical_bone"), ("femoral_bone_marrow", "marrow"),
]


def paint_thigh(x: Array, y: Array, z: Array, p: dict) -> Array:
    """Axial mid-thigh (right): muscle groups as sectors around the femur, split by fat septa."""
    paint = Painter(x.shape, THIGH_STRUCTURES)
    taper = 1.0 + 0.12 * z / 60.0
    rm = p["muscle_radius_mm"] * taper
    paint("subcutaneous_fat", _ellipse(x, y, (rm + p["fat_mm"]) * 1.05, rm + p["fat_mm"]))
    muscle = _ellipse(x, y, rm * 1.05, rm)
    fx, fy = 6.0, 4.0
    phi = np.degrees(np.arctan2(y - fy, x - fx)) % 360.0  # 0 = lateral (+x), 90 = anterior
    rad = np.hypot(x - fx, y - fy)
    sectors = {"extensors": (350.0, 150.0), "adductors": (150.0, 250.0), "hamstrings": (250.0, 350.0)}
    for name, (lo, hi) in sectors.items():
        inside = (phi >= lo) | (phi < hi) if lo > hi else (phi >= lo) & (phi < hi)
        paint(name, muscle & inside)
    septum = np.zeros(x.shape, bool)
    for edge in (350.0, 150.0, 250.0):  # thin fat septa (1.2 mm) between the groups
        dphi = np.abs((phi - edge + 180.0) % 360.0 - 180.0)
        septum |= np.radians(dphi) * np.maximum(rad, 1.0) < 0.6
    paint("septa", muscle & septum & (rad > 16.0))
    for name, ang, frac, (ra, rb) in (("sartorius", 128.0, 0.82, (11.0, 7.0)), ("gracilis", 195.0, 0.86, (7.0, 10.0))):
        cx, cy = fx + frac * rm * np.cos(np.radians(ang)), fy + frac * rm * np.sin(np.radians(ang))
        s = p["muscle_scale"]
        paint(name, _ellipse(x - cx, y - cy, ra * s, rb * s))
    nx, ny = fx + 0.45 * rm * np.cos(np.radians(268.0)), fy + 0.45 * rm * np.sin(np.radians(268.0))
    paint("nerve_bundle", np.hypot(x - nx, y - ny) < 4.0)
    paint("femoral_cortex", rad < p["femur_outer_radius_mm"])
    paint("femoral_bone_marrow", rad < p["femur_outer_radius_mm"] - p["cortex_thickness_mm"])
    return paint.out


# ----------------------------------------------------------------------------- hip
HIP_STRUCTURES: Structures = [
    ("fat", "fat"), ("muscle", "muscle"), ("pelvis", "marrow"), ("acetabular_cartilage", "cartilage"),
    ("proximal_femur", "marrow"),
]


def paint_hip(x: Array, y: Array, z: Array, p: dict) -> Array:
    """Right hip: femoral head sphere, neck and shaft capsules, greater trochanter; acetabulum."""
    paint = Painter(x.shape, HIP_STRUCTURES)
    rh = p["head_radius_mm"]
    paint("fat", _ellipse(x - 20.0, y, 110.0, 95.0))
    paint("muscle", _ellipse(x - 20.0, y, 110.0 - p["fat_mm"], 95.0 - p["fat_mm"]))
    r = np.sqrt(x**2 + y**2 + (z - 30.0) ** 2)
    paint("pelvis", (r >= rh + 1.5) & (r < rh + 11.0) & (z > 22.0) & (x < 18.0))
    paint("pelvis", (z > 45.0) & (np.abs(y - 5.0) < 12.0) & (x < 10.0) & (x > -60.0))
    paint("acetabular_cartilage", (r >= rh) & (r < rh + 1.5) & (z > 22.0) & (x < 18.0))
    neck_end = (32.0, 0.0, 30.0 - 32.0 / np.tan(np.radians(p["neck_shaft_angle_deg"] - 90.0 + 45.0)))
    femur = (r < rh)
    femur |= _seg_dist3(x, y, z, (0.0, 0.0, 30.0), neck_end) < 0.62 * rh
    femur |= _seg_dist3(x, y, z, (38.0, 0.0, 10.0), (44.0, 0.0, -200.0)) < p["shaft_radius_mm"]
    femur |= np.sqrt((x - 50.0) ** 2 + (y + 4.0) ** 2 + (z - 12.0) ** 2) < 14.0
    paint("proximal_femur", femur)
    return paint.out


# ----------------------------------------------------------------------------- shoulder
SHOULDER_STRUCTURES: Structures = [
    ("fat", "fat"), ("muscle", "muscle"), ("humerus", "marrow"), ("glenoid", "cortical_bone_thick"),
    ("scapula_body", "cortical_bone_thick"), ("acromion", "cortical_bone_thick"),
]


def paint_shoulder(x: Array, y: Array, z: Array, p: dict) -> Array:
    """Right shoulder, axial: humeral head, glenoid, thin scapular body plate, spine and acromion."""
    paint = Painter(x.shape, SHOULDER_STRUCTURES)
    rh = p["head_radius_mm"]
    paint("fat", _ellipse(x + 20.0, y + 10.0, 85.0, 78.0))
    paint("muscle", _ellipse(x + 20.0, y + 10.0, 85.0 - p["fat_mm"], 78.0 - p["fat_mm"]))
    paint("humerus", (np.sqrt(x**2 + y**2 + z**2) < rh) | ((np.hypot(x + 2.0, y) < 0.55 * rh) & (z < 0.0)))
    g0 = -(rh + 2.0)
    paint("glenoid", (x < g0) & (x > g0 - 10.0) & _ellipse(y, z, 14.0, 19.0))
    ang = np.radians(p["scapula_angle_deg"])
    u = np.array([-np.cos(ang), -np.sin(ang)])  # medial-posterior along the blade
    n = np.array([-u[1], u[0]])
    qx, qy = x - (g0 - 8.0), y
    s = qx * u[0] + qy * u[1]
    t = qx * n[0] + qy * n[1]
    half_t = p["blade_half_thickness_mm"]
    blade = (np.abs(t) < half_t) & (s > 0.0) & (s < 105.0) & (z < 30.0) & (z > -60.0 + 0.35 * s)
    paint("scapula_body", blade)
    paint("scapula_body", (np.abs(t + 9.0) < 4.5) & (s > 0.0) & (s < 95.0) & (z > 18.0) & (z < 32.0))
    paint("acromion", (z > 30.0) & (z < 38.0) & (x > -12.0) & (x < 22.0) & (y < -6.0) & (y > -30.0))
    return paint.out


# ----------------------------------------------------------------------------- registry
GEOMETRIES: dict[str, tuple[Structures, Callable[[Array, Array, Array, dict], Array]]] = {
    "knee": (KNEE_STRUCTURES, paint_knee),
    "spine_sagittal": (SPINE_SAG_STRUCTURES, paint_spine_sagittal),
    "spine_axial_muscle": (SPINE_AX_MUSCLE_STRUCTURES, paint_spine_axial_muscle),
    "spine_axial_disc": (SPINE_AX_DISC_STRUCTURES, paint_spine_axial_disc),
    "thigh": (THIGH_STRUCTURES, paint_thigh),
    "hip": (HIP_STRUCTURES, paint_hip),
    "shoulder": (SHOULDER_STRUCTURES, paint_shoulder),
}

# Dataset label name -> structures it unites (names not listed map to the structure of that name).
LABEL_STRUCTURES: dict[str, tuple[str, ...]] = {
    "femoral_cartilage": ("fc_lat", "fc_med"),
    "tibial_cartilage": ("tc_lat", "tc_med"),
    "patellar_cartilage": ("pc",),
    "lateral_tibial_cartilage": ("tc_lat",), "medial_tibial_cartilage": ("tc_med",),
    "lateral_femoral_cartilage": ("fc_lat",), "medial_femoral_cartilage": ("fc_med",),
    "lateral_meniscus": ("men_lat",), "medial_meniscus": ("men_med",),
    "scapula": ("glenoid", "scapula_body", "acromion"),
    **{f"vertebral_body_{lv}": (f"vb_{lv}",) for lv in SPINE_LEVELS},
}


def label_lookup(geometry: str, label_values: dict[str, int]) -> np.ndarray:
    """Array mapping structure index -> dataset label value (0 for unlabelled structures)."""
    structures, _ = GEOMETRIES[geometry]
    index = {name: i + 1 for i, (name, _) in enumerate(structures)}
    lut = np.zeros(len(structures) + 1, dtype=np.int16)
    for label, value in label_values.items():
        for s in LABEL_STRUCTURES.get(label, (label,)):
            if s not in index:
                raise KeyError(f"label {label!r} needs structure {s!r}, absent from geometry {geometry!r}")
            lut[index[s]] = value
    return lut


# ----------------------------------------------------------------------------- subject parameters
def sample_params(geometry: str, demo: dict, rng: np.random.Generator) -> dict:
    """Anatomy parameters of one subject, driven by its demographics (the cohort's ground truth).

    ``demo`` holds the true age_years, sex ("F"/"M") and weight_kg/bmi (before any values are
    hidden from the exported records).
    """
    age, male, weight, bmi = demo["age_years"], demo["sex"] == "M", demo["weight_kg"], demo["bmi"]
    size = (1.08 if male else 0.94) * rng.normal(1.0, 0.03)
    muscle = float(np.clip(np.sqrt(weight / 75.0) * (1.12 if male else 0.9) * rng.normal(1.0, 0.05), 0.7, 1.5))
    fat = float(np.clip(3.0 + 0.9 * (bmi - 20.0) + (4.0 if not male else 0.0) + rng.normal(0, 1.5), 3.0, 40.0))
    if geometry == "knee":
        cart = lambda base: float(np.clip(base - 0.012 * (age - 40.0) + (0.2 if male else 0.0) + rng.normal(0, 0.12), 0.8, 4.0))  # noqa: E731
        return {
            "condyle_radius_mm": 30.0 * size, "femoral_thickness_mm": cart(2.3),
            "tibial_thickness_mm": cart(2.0), "patellar_thickness_mm": cart(2.8),
            "knee_width_mm": 78.0 * size, "notch_half_width_mm": 9.0 * size,
            "meniscus_height_mm": 6.0 * size, "meniscus_inner_q": 0.7,
            "patella_half_thickness_mm": 10.0 * size, "patella_half_length_mm": 9.0 * size,
            "patella_half_width_mm": 20.0 * size,
        }
    if geometry == "spine_sagittal":
        base = 11.0 - 0.045 * (age - 40.0) + (0.4 if male else 0.0)
        level_offset = dict(zip(SPINE_DISCS, (-1.5, -0.8, 0.0, 0.6, -0.4)))
        return {
            "disc_height_mm": {d: float(np.clip(base + level_offset[d] + rng.normal(0, 0.4), 4.0, 16.0)) for d in SPINE_DISCS},
            "body_height_mm": 26.0 * size, "body_depth_mm": 34.0 * size, "body_half_width_mm": 22.0 * size,
            "column_y_mm": -30.0, "s1_top_z_mm": -95.0, "sacral_tilt_deg": 30.0 + rng.normal(0, 3.0),
            "lordosis_step_deg": 8.0 + rng.normal(0, 1.0), "fat_mm": fat,
        }
    torso = {"torso_half_width_mm": 120.0 * size + 1.2 * fat, "torso_half_depth_mm": 95.0 * size + 1.0 * fat,
             "fat_mm": fat, "muscle_scale": muscle}
    if geometry == "spine_axial_muscle":
        return torso
    if geometry == "spine_axial_disc":
        return {**torso, "disc_height_mm": float(np.clip(11.0 - 0.045 * (age - 40.0) + rng.normal(0, 0.5), 5.0, 15.0)),
                "nerve_radius_mm": 3.0}
    if geometry == "thigh":
        return {"muscle_radius_mm": 58.0 * muscle, "fat_mm": fat, "muscle_scale": muscle,
                "femur_outer_radius_mm": 14.0 * size, "cortex_thickness_mm": 5.0 * size}
    if geometry == "hip":
        return {"head_radius_mm": 23.5 * size, "neck_shaft_angle_deg": 128.0 + rng.normal(0, 4.0),
                "shaft_radius_mm": 14.0 * size, "fat_mm": fat}
    if geometry == "shoulder":
        return {"head_radius_mm": 23.0 * size, "scapula_angle_deg": 35.0 + rng.normal(0, 4.0),
                "blade_half_thickness_mm": 2.5, "fat_mm": fat}
    raise KeyError(f"unknown geometry {geometry!r}")
