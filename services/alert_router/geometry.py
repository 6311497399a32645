"""Small planar geometry on normalised image coordinates (x right, y down, both 0..1).

Kept in-house: the handful of textbook predicates below are cheaper to own than a GEOS dependency.
"""

from __future__ import annotations

from collections.abc import Sequence

Point = tuple[float, float]

_EPS = 1e-12


def signed_area(polygon: Sequence[Point]) -> float:
    """Shoelace area; the sign tells the winding order."""
    total = 0.0
    for i, (x1, y1) in enumerate(polygon):
        x2, y2 = polygon[(i + 1) % len(polygon)]
        total += x1 * y2 - x2 * y1
    return total / 2.0


def cross(o: Point, a: Point, b: Point) -> float:
    """Z of (a - o) x (b - o): > 0 when b lies counter-clockwise of o->a in x-right/y-up axes."""
    return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])


def _on_segment(p: Point, q: Point, r: Point) -> bool:
    """r is collinear with p-q; is it inside the bounding box of p-q?"""
    return (
        min(p[0], q[0]) - _EPS <= r[0] <= max(p[0], q[0]) + _EPS
        and min(p[1], q[1]) - _EPS <= r[1] <= max(p[1], q[1]) + _EPS
    )


def segments_intersect(p1: Point, p2: Point, q1: Point, q2: Point) -> bool:
    """True when closed segments p1-p2 and q1-q2 share at least one point (touching counts)."""
    d1 = cross(q1, q2, p1)
    d2 = cross(q1, q2, p2)
    d3 = cross(p1, p2, q1)
    d4 = cross(p1, p2, q2)
    if ((d1 > _EPS and d2 < -_EPS) or (d1 < -_EPS and d2 > _EPS)) and (
        (d3 > _EPS and d4 < -_EPS) or (d3 < -_EPS and d4 > _EPS)
    ):
        return True
    if abs(d1) <= _EPS and _on_segment(q1, q2, p1):
        return True
    if abs(d2) <= _EPS and _on_segment(q1, q2, p2):
        return True
    if abs(d3) <= _EPS and _on_segment(p1, p2, q1):
        return True
    return abs(d4) <= _EPS and _on_segment(p1, p2, q2)


def polygon_problem(polygon: Sequence[Point]) -> str | None:
    """Why `polygon` is unusable as a zone, or None when it is a valid simple polygon."""
    if len(polygon) < 3:
        return f"needs at least 3 points, got {len(polygon)}"
    for index, (x, y) in enumerate(polygon):
        if not (0.0 <= x <= 1.0 and 0.0 <= y <= 1.0):
            return f"point {index} ({x}, {y}) is outside 0..1 (coordinates are fractions of the frame size)"
    count = len(polygon)
    for i in range(count):
        if polygon[i] == polygon[(i + 1) % count]:
            return f"points {i} and {(i + 1) % count} are identical"
    for i in range(count):
        a1, a2 = polygon[i], polygon[(i + 1) % count]
        for j in range(i + 1, count):
            # Adjacent edges share a vertex by construction; only non-adjacent edges may not touch.
            if j == i + 1 or (i == 0 and j == count - 1):
                continue
            b1, b2 = polygon[j], polygon[(j + 1) % count]
            if segments_intersect(a1, a2, b1, b2):
                return f"is self-intersecting: edge {i}-{(i + 1) % count} crosses edge {j}-{(j + 1) % count}"
    # After the crossing check: a bow-tie's lobes cancel out to zero signed area too.
    if abs(signed_area(polygon)) <= 1e-9:
        return "has zero area (points are collinear)"
    return None


def point_in_polygon(point: Point, polygon: Sequence[Point]) -> bool:
    """Even-odd ray casting; points exactly on an edge may fall either way."""
    x, y = point
    inside = False
    count = len(polygon)
    j = count - 1
    for i in range(count):
        xi, yi = polygon[i]
        xj, yj = polygon[j]
        if (yi > y) != (yj > y):
            x_cross = xi + (y - yi) * (xj - xi) / (yj - yi)
            if x < x_cross:
                inside = not inside
        j = i
    return inside


def side_of_line(a: Point, b: Point, p: Point) -> float:
    """Signed side of p relative to the directed line a->b in image axes (y down).

    Positive means p is on the RIGHT of a->b as seen on screen; negative means on the LEFT.
    """
    return cross(a, b, p)
