"""The shell recipes parse, and the committed manifest of Debian audio matches the script that writes it."""
import csv
import re
import subprocess
from pathlib import Path

import pytest

RECIPES = Path(__file__).resolve().parents[1] / "recipes"


@pytest.mark.parametrize("script", sorted(p.name for p in RECIPES.glob("*.sh")))
def test_shell_recipe_parses(script):
    r = subprocess.run(["bash", "-n", str(RECIPES / script)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_apt_audio_manifest_has_a_row_for_every_source_the_script_writes():
    script = (RECIPES / "apt_audio.sh").read_text()
    written = re.findall(r"^\s*row (\S+) (\S+) ", script, flags=re.M)
    with open(RECIPES / "apt_audio_manifest.tsv", newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    assert [(r["folder"], r["package"]) for r in rows] == written
    for r in rows:
        assert len(r) == 8 and int(r["files"]) > 0 and float(r["hours"]) > 0, r
        assert r["package"] in script.split("PKGS=(", 1)[1].split(")", 1)[0], r["package"]  # installed by the script
        assert r["folder"].split("/")[0] in ("speech", "speech_nb", "noise"), r


def test_compare_held_out_names_the_measures_a_model_does_not_win():
    import importlib.util

    spec = importlib.util.spec_from_file_location("compare_held_out", RECIPES / "compare_held_out.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    ref = {m: 1.0 for m in mod.MEASURES}
    assert mod.beats({m: 1.5 for m in mod.MEASURES}, ref) == []
    worse = {m: 1.5 for m in mod.MEASURES} | {"dnsmos_bak": 0.9, "csig": 1.0}  # a tie is no win
    assert mod.beats(worse, ref) == ["csig", "dnsmos_bak"]
    assert len(mod.MEASURES) == 11 and "si_sdr" in mod.MEASURES
