"""dm2gal: paint galaxy stellar masses onto gravity-only simulations with a 3D CNN.

One module per pipeline stage (see DESIGN in the README); shared helpers live in
`atomic` (write-then-move outputs), `tng` (TNG on-disk layout and units) and
`fields` (Zarr fields with their attributes).
"""

__version__ = "0.1.0"
