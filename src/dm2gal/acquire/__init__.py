"""The acquire stage: put a {dark, hydro} run pair on disk in TNG layout.

Sources: `synthetic` (the built-in mini-universe), `tng` (the TNG web API),
`camels` (public CAMELS runs), `local` (a copy already on disk). Every source
ends the same way: `manifest.write_manifest` checks each chunk and records it in
`{data_dir}/{sim}/manifest.json`, the file later stages depend on.
"""
