"""Write tests/data/v1_regression.json from a checkout of the workbench before ruleset v2 (commit 2746766).

    git worktree add /tmp/v1-base 2746766
    PYTHONPATH=/tmp/v1-base .venv/bin/python tests/data/make_v1_regression.py /tmp/v1-base \
        > tests/data/v1_regression.json

The code measured is the checkout's (first on PYTHONPATH); the hashing is tests/test_v1_regression.py's, so the
snapshot and the test compare the same thing.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # tests/: the samples helper and the test module's hashing

import samples  # noqa: E402
import test_v1_regression as t  # noqa: E402

import phase1lib  # noqa: E402
from phase1lib.engine import evaluate_structure, run  # noqa: E402
from phase1lib.errors import Phase1Error  # noqa: E402
from phase1lib.presets import preset_ranges  # noqa: E402
from phase1lib.runs import save_run  # noqa: E402

PROJECTS = ("london_dc_alpha", "frankfurt_dc_beta", "ashburn_dc_gamma", "osaka_test")
CASES = (("current_1920", None), ("aggressive", None), ("value_max_bbb", None), ("repo_first_aaa_aa", None),
         ("phase3_50k", 3000), ("maximum_250k", 4000))
STRUCTURES = (
    {"senior_tenor": 20, "senior_coupon": 0.04, "senior_dscr": 1.35},
    {"senior_tenor": 15, "senior_coupon": 0.05, "senior_dscr": 1.25, "senior_amort": "bullet", "wrap": True,
     "mezz_on": True, "mezz_amort": "annuity"},
    {"senior_tenor": 12, "senior_coupon": 0.055, "senior_dscr": 1.3, "senior_amort": "level", "io_months": 12,
     "indexation_mode": "flat", "zcis_tenor_years": 5, "mezz_on": True},
    {"senior_tenor": 10, "senior_coupon": 0.06, "senior_dscr": 1.4, "senior_amort": "annuity", "wrap": True,
     "zcis_tenor_years": 3},
)


def main() -> None:
    root = Path(sys.argv[1]).resolve()
    if Path(phase1lib.__file__).resolve().parent.parent != root:
        raise SystemExit(f"phase1lib comes from {phase1lib.__file__}, not {root}: put {root} first on PYTHONPATH")
    samples.EXAMPLES = root / "examples"  # the checkout's own samples
    out: dict = {"runs": [], "evaluate": []}
    for name in PROJECTS:
        for preset, sample in CASES:
            try:
                result = run(t.project(name), preset_ranges(preset), sample=sample, seed=424242,
                             today=dt.date(2026, 11, 30))
            except Phase1Error as error:  # a preset the project cannot take (e.g. a ZCIS tenor past its lease)
                print(f"not in the snapshot: {name} {preset}: {error}", file=sys.stderr)
                continue
            with tempfile.TemporaryDirectory() as tmp:
                folder = save_run(result, Path(tmp))
                out["runs"].append({"project": name, "preset": preset, "sample": sample, "run_id": result.run_id,
                                    "frame_sha256": t.frame_sha256(folder),
                                    "top_sha256": t.sha((folder / "top.json").read_bytes()), "counts": result.counts})
    for name in PROJECTS:
        for structure in STRUCTURES:
            res = evaluate_structure(t.project(name), structure, closing_date=dt.date(2026, 9, 30))
            out["evaluate"].append({"project": name, "structure": structure,
                                    "sha256": t.sha(json.dumps(res, sort_keys=True).encode())})
    json.dump(out, sys.stdout, indent=1)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
