"""The report's summary tables (dm2gal.tables): cubes.json, occupancy.json, summary.tsv as HTML."""
import json

from dm2gal.tables import write_summary_table


def test_json_report_side_by_side(tmp_path):
    src = tmp_path / "cubes.json"
    src.write_text(json.dumps({"n_grid": 64, "calibration": {"blocks": 3},
                               "validation": {"start": [1, 2, 3], "size": 26, "halo": None},
                               "test": {"start": [4, 5, 6], "size": 26, "halo": {"mass": 1.23456e12}}}))
    out = tmp_path / "split.html"
    write_summary_table("split", src, out)
    page = out.read_text()
    assert "<th>validation</th><th>test</th>" in page
    assert "<td>calibration.blocks</td><td>3</td>" in page
    assert "<td>halo.mass</td><td>&ndash;</td><td>1.235e+12</td>" in page
    assert "<td>start</td><td>[1, 2, 3]</td><td>[4, 5, 6]</td>" in page


def test_selection_table_bolds_the_selected_point(tmp_path):
    src = tmp_path / "summary.tsv"
    src.write_text("point\tselection\tselected\na\t0.123456\t1\nb\t0.5\t0\n")
    out = tmp_path / "select.html"
    write_summary_table("select", src, out)
    page = out.read_text()
    assert "<td><b>a</b></td><td><b>0.1235</b></td>" in page and "<td>b</td>" in page
