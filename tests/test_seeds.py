"""Per-stage seeds (dm2gal.seeds): derived from the top-level seed, distinct per stage and universe."""
import json

import numpy as np
import pytest

from dm2gal.seeds import STAGES, record_seed, stage_seed


def test_stage_seeds_are_reproducible_and_distinct():
    seeds = {(s, u): stage_seed(1234, s, u) for s in STAGES for u in ("test", "heldout1")}
    assert len(set(seeds.values())) == len(seeds)
    assert stage_seed(1234, "split") == stage_seed(1234, "split") != stage_seed(1235, "split")
    assert stage_seed(1234, "hod") == int(np.random.SeedSequence(1234, spawn_key=(
        __import__("zlib").crc32(b"hod"),)).generate_state(1)[0])
    with pytest.raises(ValueError, match="unknown stage"):
        stage_seed(1234, "grid")


def test_record_seed(tmp_path):
    path = tmp_path / "cubes.json"
    path.write_text(json.dumps({"n_grid": 64}))
    record_seed(path, 42)
    assert json.loads(path.read_text()) == {"n_grid": 64, "seed": 42}
