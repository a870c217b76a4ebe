"""The phantom's anatomy, laid out in millimetres around the first lumbar vertebra (L1) with
patient-to-patient variation: structures, their default TotalSegmentator v2 label values, and the drawing
steps in painting order (later paint covers earlier paint)."""
from __future__ import annotations

from typing import Callable, Dict, Tuple

import numpy as np

from .canvas import Canvas

VERTEBRAE: Tuple[str, ...] = ("L5", "L4", "L3", "L2", "L1", "T12", "T11", "T10", "T9", "T8")  # caudal to cranial
_L1 = VERTEBRAE.index("L1")
_SPINE_Y = 35.0  # anatomical y (mm, posterior) of the vertebral bodies' centre

DEFAULT_LABELS: Dict[str, int] = {
    "spleen": 1, "kidney_right": 2, "kidney_left": 3, "gallbladder": 4, "liver": 5, "stomach": 6, "pancreas": 7,
    "lung_lower_lobe_left": 11, "lung_lower_lobe_right": 14, "small_bowel": 18, "duodenum": 19, "colon": 20,
    **{f"vertebrae_{level}": 27 + i for i, level in enumerate(VERTEBRAE)},
    "heart": 51, "aorta": 52, "inferior_vena_cava": 63, "portal_vein_and_splenic_vein": 64,
    "iliac_artery_left": 65, "iliac_artery_right": 66, "spinal_cord": 79,
    "autochthon_left": 86, "autochthon_right": 87, "iliopsoas_left": 88, "iliopsoas_right": 89,
}
"""Structure name -> TotalSegmentator v2 label value (see labels_total_v2.json)."""

STRUCTURES: Tuple[str, ...] = tuple(DEFAULT_LABELS)


def _body(canvas: Canvas, rng: np.random.Generator) -> None:
    """Body outline, subcutaneous fat, abdominal wall muscles and the visceral fat of the cavity."""
    half_width, front, back = rng.uniform(125, 155), rng.uniform(100, 130), rng.uniform(100, 120)
    fat, muscle = rng.uniform(8, 30), rng.uniform(8, 14)
    wave = [(rng.uniform(0.02, 0.06), rng.uniform(200, 400), rng.uniform(0, 2 * np.pi)) for _ in range(2)]
    box = (slice(None),) * 3
    x, y, _ = canvas.coords(box)
    x2, y2, anterior = x * x, y * y, y < 0
    del x, y
    z = canvas.axes[2][:, None, None]  # the outline changes slowly along z: no need to deform z here
    change2 = (1 + sum(a * np.sin(2 * np.pi * z / period + phase) for a, period, phase in wave)) ** 2

    def inside(inset_front: float, inset_back: float, inset_side: float) -> np.ndarray:
        depth2 = np.where(anterior, np.float32((front - inset_front) ** 2), np.float32((back - inset_back) ** 2))
        return x2 / np.float32((half_width - inset_side) ** 2) + y2 / depth2 < change2

    body = inside(0, 0, 0)
    canvas.inner = inside(fat, 0.6 * fat, fat)
    canvas.cavity = inside(fat + muscle, 0.6 * fat + muscle, fat + muscle)
    canvas.wall = (half_width - fat - muscle / 2, front - fat - muscle / 2, back - 0.6 * fat - muscle / 2)
    canvas.paint(box, body, rng.uniform(-115, -90))
    canvas.paint(box, canvas.inner, rng.uniform(40, 60))
    canvas.paint(box, canvas.cavity, rng.uniform(-110, -80))


def _lungs_and_heart(canvas: Canvas, rng: np.random.Generator) -> None:
    """Lower lobes of both lungs and the bottom of the heart, at the top of the field of view."""
    lung_hu = rng.uniform(-880, -820)
    for side, name in ((1, "lung_lower_lobe_left"), (-1, "lung_lower_lobe_right")):
        shape = canvas.ellipsoid((side * 70 + rng.normal(0, 4), 30, 175 + rng.normal(0, 8)),
                                 (60, 55, rng.uniform(95, 120)))
        if shape:
            canvas.paint(shape[0], shape[1] < 1, lung_hu, name, clip=canvas.cavity)
    shape = canvas.ellipsoid((15, -30, 215 + rng.normal(0, 8)), (60, 50, 60), (-30, 0, 20))
    if shape:
        canvas.paint(shape[0], shape[1] < 1, rng.uniform(130, 200), "heart", clip=canvas.cavity)


def _bowel(canvas: Canvas, rng: np.random.Generator) -> None:
    """Colon framing the abdomen and small-bowel loops below the pancreas, both with gas pockets."""
    colon = np.array([(-75, -10, -140), (-85, 5, -70), (-78, -20, -15), (-40, -65, -20), (0, -70, -25),
                      (40, -60, -15), (80, -25, 20), (88, 10, -40), (80, 15, -110), (40, -20, -150)], dtype=float)
    colon += rng.normal(0, 6, colon.shape)
    _gut(canvas, rng, "colon", colon, rng.uniform(16, 22), rng.uniform(-80, -20), pockets=4)
    for _ in range(int(rng.integers(3, 6))):
        loop = rng.uniform((-70, -75, -150), (70, 10, -40), size=(5, 3))
        _gut(canvas, rng, "small_bowel", loop, rng.uniform(9, 13), rng.uniform(10, 35), pockets=2)


def _gut(canvas: Canvas, rng: np.random.Generator, name: str, path: np.ndarray, radius: float, content_hu: float,
         pockets: int) -> None:
    shape = canvas.tube(path, np.full(len(path), radius))
    if shape is None:
        return
    canvas.paint(*shape, content_hu, name, clip=canvas.cavity)
    for point in path[rng.choice(len(path), size=pockets, replace=False)]:
        gas = canvas.ellipsoid(point + (0, -0.4 * radius, 0), (rng.uniform(0.4, 0.8) * radius,) * 3)
        if gas:
            canvas.paint(gas[0], gas[1] < 1, -1000, name, within=name)


def _upper_abdomen(canvas: Canvas, rng: np.random.Generator) -> None:
    """Stomach (with a gas cap), liver (three lobes), gallbladder and spleen."""
    center, semi = np.array((45, -25, 85)) + rng.normal(0, 6, 3), np.array((40, 32, 55)) * rng.uniform(0.8, 1.2)
    stomach = canvas.ellipsoid(center, semi, (0, -25, 0))
    if stomach:
        box, r2 = stomach
        canvas.paint(box, r2 < 1, rng.uniform(15, 40), "stomach", clip=canvas.cavity)
        anterior = canvas.coords(box)[1] < center[1] - rng.uniform(0.55, 0.8) * semi[1]
        canvas.paint(box, (r2 < 1) & anterior, -1000, "stomach", within="stomach")
    liver_hu, size = rng.uniform(52, 70), rng.uniform(0.85, 1.1)
    for center, semi, angles in (((-55, 5, 65), (68, 78, 75), (0, 0, 0)),
                                 ((5, -40, 95), (55, 35, 38), (-15, 0, 0)),
                                 ((-15, 25, 80), (18, 15, 25), (0, 0, 0))):
        lobe = canvas.ellipsoid(np.add(center, rng.normal(0, 4, 3)), np.multiply(semi, size * rng.uniform(0.9, 1.1, 3)),
                                np.add(angles, rng.normal(0, 8, 3)))
        if lobe:
            canvas.paint(lobe[0], lobe[1] < 1, liver_hu, "liver", clip=canvas.cavity)
    gallbladder = canvas.ellipsoid((-35 + rng.normal(0, 5), -35, 10 + rng.normal(0, 8)),
                                   (15, 15, rng.uniform(25, 40)), (0, 0, rng.uniform(-25, 25)))
    if gallbladder:
        canvas.paint(gallbladder[0], gallbladder[1] < 1, rng.uniform(0, 20), "gallbladder", clip=canvas.cavity)
    spleen = canvas.ellipsoid(np.array((78, 30, 60)) + rng.normal(0, 5, 3),
                              np.array((20, 50, 45)) * rng.uniform(0.8, 1.2, 3), (rng.uniform(25, 50), 0, 0))
    if spleen:
        canvas.paint(spleen[0], spleen[1] < 1, rng.uniform(42, 56), "spleen", clip=canvas.cavity)


def _pancreas_region(canvas: Canvas, rng: np.random.Generator) -> None:
    """Duodenal C-loop, pancreas (head, uncinate process, neck, body, tail to the splenic hilum) and its veins."""
    shift = rng.normal(0, (6, 5, 10))
    head, neck, body, tail = (np.array(p, dtype=float) + shift + rng.normal(0, s, 3) for p, s in
                              (((-30, -2, -25), 5), ((-8, -25, -8), 4), ((30, -18, 2), 6), ((70, 18, 15), 7)))
    duodenum = np.array([(-5, -40, 25), (-40, -20, 15), (-55, -2, -5), (-50, 0, -55), (-10, -8, -65),
                         (25, -10, -45), (30, -15, -25)], dtype=float) + shift + rng.normal(0, 3, (7, 3))
    loop = canvas.tube(duodenum, np.full(len(duodenum), rng.uniform(9, 12)))
    if loop:
        canvas.paint(*loop, rng.uniform(10, 30), "duodenum", clip=canvas.cavity)
    pancreas_hu = rng.uniform(32, 48)
    gland = canvas.tube([head, neck, body, tail], [rng.uniform(15, 21), rng.uniform(8, 11), rng.uniform(9, 13),
                                                   rng.uniform(8, 12)])
    if gland:
        canvas.paint(*gland, pancreas_hu, "pancreas", clip=canvas.cavity)
    uncinate = canvas.ellipsoid(head + (5, 12, -15), (12, 8, rng.uniform(8, 14)))
    if uncinate:
        canvas.paint(uncinate[0], uncinate[1] < 1, pancreas_hu, "pancreas", clip=canvas.cavity)
    venous_hu = rng.uniform(130, 180)
    confluence = neck + (0, 15, 0)
    for points, radius, name in (([tail + (5, 10, 5), body + (0, 13, 2), confluence, (-30, 15, 45)],
                                  rng.uniform(4, 6), "portal_vein_and_splenic_vein"),
                                 ([confluence, confluence + (0, -15, -40), (-5, -10, -100)], 5, None)):
        vein = canvas.tube(points, np.full(len(points), radius))
        if vein:
            canvas.paint(*vein, venous_hu, name, clip=canvas.cavity)


def _kidneys_and_muscles(canvas: Canvas, rng: np.random.Generator) -> None:
    """Iliopsoas, kidneys (cortex and medulla) and the paraspinal (autochthonous) muscles."""
    muscle_hu = rng.uniform(40, 60)
    for side, suffix in ((1, "left"), (-1, "right")):
        psoas = canvas.tube([(side * 28, _SPINE_Y + 5, -10), (side * 40, _SPINE_Y + 5, -90),
                             (side * 55, _SPINE_Y - 10, -170)],
                            [6, rng.uniform(16, 22), 24])
        if psoas:
            canvas.paint(*psoas, muscle_hu, f"iliopsoas_{suffix}", clip=canvas.cavity)
    cortex_hu, medulla_hu = rng.uniform(120, 170), rng.uniform(60, 100)
    for side, suffix, z in ((-1, "right", -25), (1, "left", -10)):
        center = (side * 65 + rng.normal(0, 5), _SPINE_Y + 10 + rng.normal(0, 4), z + rng.normal(0, 8))
        kidney = canvas.ellipsoid(center, np.array((27, 24, 52)) * rng.uniform(0.85, 1.1, 3),
                                  (side * rng.uniform(20, 35), side * rng.uniform(-20, -8), 0))
        if kidney:
            box, r2 = kidney
            hu = np.where(r2 > rng.uniform(0.55, 0.7), np.float32(cortex_hu), np.float32(medulla_hu))
            canvas.paint(box, r2 < 1, hu, f"kidney_{suffix}", clip=canvas.cavity)
    for side, suffix in ((1, "left"), (-1, "right")):
        back = canvas.cylinder((side * 38, _SPINE_Y + 42, 0), (rng.uniform(20, 26), 18), 400)
        if back:
            canvas.paint(back[0], back[1] < 1, muscle_hu, f"autochthon_{suffix}", clip=canvas.inner)


def _vessels(canvas: Canvas, rng: np.random.Generator) -> None:
    """Aorta with its iliac bifurcation and superior mesenteric artery, and the inferior vena cava."""
    arterial_hu, venous_hu = rng.uniform(160, 220), rng.uniform(130, 180)
    bifurcation = np.array((5, _SPINE_Y - 32, -105)) + rng.normal(0, 4, 3)
    radius = rng.uniform(10, 13)
    front = _SPINE_Y - 16  # anterior surface of the vertebral bodies
    vessels = [([(12, front - 12, 260), (12, front - 10, 60), (10, front - 13, -40), bifurcation],
                [radius, radius, radius - 1, radius - 2], arterial_hu, "aorta"),
               ([(12, front - 22, -5), (6, front - 42, -30), (0, front - 48, -90)], [3.5, 3.5, 3], arterial_hu, None),
               ([(-22, front - 8, -200), (-22, front - 7, -40), (-25, front - 4, 60), (-15, front, 260)],
                [rng.uniform(9, 12)] * 4, venous_hu, "inferior_vena_cava")]
    for side, suffix in ((1, "left"), (-1, "right")):
        vessels.append(([bifurcation, (side * 35, front - 20, -150), (side * 55, front - 25, -210)], [6.5] * 3,
                        arterial_hu, f"iliac_artery_{suffix}"))
    for points, radii, hu, name in vessels:
        vessel = canvas.tube(points, radii)
        if vessel:
            canvas.paint(*vessel, hu, name, clip=canvas.cavity)


def _spine_and_ribs(canvas: Canvas, rng: np.random.Generator) -> None:
    """Vertebrae (cortical shell, cancellous core, posterior elements), discs, spinal canal and cord, ribs."""
    pitch, disc = rng.uniform(33, 38), rng.uniform(7, 9)
    cortical, cancellous, posterior = rng.uniform(700, 1000), rng.uniform(180, 300), rng.uniform(500, 700)
    half_height = (pitch - disc) / 2
    for level, name in enumerate(VERTEBRAE):
        z = (level - _L1) * pitch
        label = f"vertebrae_{name}"
        parts = [(canvas.cylinder((0, _SPINE_Y, z), (22, 16), half_height), 0.85),
                 (canvas.cylinder((0, _SPINE_Y + 26, z), (16, 14), 0.7 * half_height), None),
                 (canvas.ellipsoid((0, _SPINE_Y + 45, z - 4), (4, 14, 0.45 * half_height)), None),
                 (canvas.ellipsoid((0, _SPINE_Y + 22, z), (rng.uniform(36, 46), 6, 5)), None)]
        for shape, shell in parts:
            if shape is None:
                continue
            box, r = shape
            hu = np.where(r > shell, np.float32(cortical), np.float32(cancellous)) if shell else posterior
            canvas.paint(box, r < 1, hu, label, clip=canvas.inner)
        between = canvas.cylinder((0, _SPINE_Y, z + pitch / 2), (22, 16), disc / 2)
        if between:
            canvas.paint(between[0], between[1] < 1, rng.uniform(70, 100), clip=canvas.inner)
        if name.startswith("T"):
            _ribs(canvas, rng, z, posterior)
    for radius, hu, name in ((9, rng.uniform(5, 15), None), (5, rng.uniform(30, 40), "spinal_cord")):
        canal = canvas.tube([(0, _SPINE_Y + 26, -400), (0, _SPINE_Y + 26, 400)], [radius, radius], smooth=False)
        if canal:
            canvas.paint(*canal, hu, name, clip=canvas.inner)


def _ribs(canvas: Canvas, rng: np.random.Generator, z: float, hu: float) -> None:
    """A pair of ribs from the transverse processes around the body wall, sloping down anteriorly."""
    side_axis, front_axis, back_axis = canvas.wall
    for side in (1, -1):
        points = [(side * 45, _SPINE_Y + 22, z)] + [
            (side * side_axis * np.cos(a), (back_axis if a > 0 else front_axis) * np.sin(a), z - 12 * i)
            for i, a in enumerate(np.radians([60, 40, 10, -25, -55]))]
        rib = canvas.tube(points, [4.5] * len(points))
        if rib:
            canvas.paint(*rib, hu + rng.normal(0, 30), clip=canvas.inner)


DrawStep = Callable[[Canvas, np.random.Generator], None]
DRAWING_ORDER: Tuple[DrawStep, ...] = (_body, _lungs_and_heart, _bowel, _upper_abdomen, _pancreas_region,
                                       _kidneys_and_muscles, _vessels, _spine_and_ribs)
