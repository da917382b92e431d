"""2-D surfaces as VTK XML PolyData (``.vtp``) for ParaView, as loss-landscape's ``h52vtp`` (which needs the
``interp2d`` SciPy removed): one point per grid point at height z, one quad per grid cell with its mean z."""

from __future__ import annotations

import numpy as np

from ..io import Surface


def surface_to_vtp(s: Surface, value: str = "train_loss", *, zmax: float | None = None, log: bool = False) -> str:
    """The VTP document; ``zmax`` clips heights, ``log`` plots ``log(z + 0.1)`` (h52vtp's options)."""
    if s.dim != 2:
        raise ValueError(f"{s.path} is not a 2-D surface")
    if value not in s.values:
        raise ValueError(f"{s.path} has no {value!r} (it has {', '.join(s.values)})")
    z = np.array(s.values[value], dtype=float)
    finite = z[np.isfinite(z)]
    z = np.where(np.isfinite(z), z, finite.max() if finite.size else 0.0)  # missing/diverged points drawn at the top
    if zmax is not None:
        z = np.minimum(z, zmax)
    if log:
        z = np.log(z + 0.1)
    ny, nx = z.shape
    if s.ycoordinates is None:
        raise ValueError("a .vtp surface needs a 2-D surface")
    X, Y = np.meshgrid(s.xcoordinates, s.ycoordinates)
    points = np.stack([X.ravel(), Y.ravel(), z.ravel()], 1)
    k = (np.arange(ny - 1)[:, None] * nx + np.arange(nx - 1)[None, :]).ravel()
    quads = np.stack([k, k + 1, k + nx + 1, k + nx], 1)
    cell = z.ravel()[quads].mean(1)

    def arr(values, **attrs) -> str:
        head = " ".join(f'{a}="{v}"' for a, v in attrs.items())
        return (
            f'<DataArray {head} format="ascii">{" ".join(map(repr, np.asarray(values).ravel().tolist()))}</DataArray>'
        )

    return "\n".join(
        [
            '<?xml version="1.0"?>',
            '<VTKFile type="PolyData" version="0.1" byte_order="LittleEndian">',
            "<PolyData>",
            f'<Piece NumberOfPoints="{len(points)}" NumberOfVerts="0" NumberOfLines="0" NumberOfStrips="0" '
            f'NumberOfPolys="{len(quads)}">',
            f"<Points>{arr(points, type='Float64', NumberOfComponents=3)}</Points>",
            f'<PointData Scalars="zvalue">{arr(z, type="Float64", Name="zvalue")}</PointData>',
            f'<CellData Scalars="averaged zvalue">{arr(cell, type="Float64", Name="averaged zvalue")}</CellData>',
            f"<Polys>{arr(quads, type='Int64', Name='connectivity')}"
            f"{arr(4 * np.arange(1, len(quads) + 1), type='Int64', Name='offsets')}</Polys>",
            "</Piece>",
            "</PolyData>",
            "</VTKFile>",
            "",
        ]
    )


__all__ = ["surface_to_vtp"]
