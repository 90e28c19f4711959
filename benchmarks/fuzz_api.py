"""Longer schemathesis run against a local AutoMatrix: every operation, `--examples` requests each.

    .venv/bin/python benchmarks/fuzz_api.py [--examples 200] [--seed 1]

The same checks as tests/serving/test_fuzz.py (no 500, no undocumented 5xx, every answer matches
the schema for its status and content type), on a local stack with a registered @champion and
training disabled. Exit code 1 when anything failed; the first failures are printed.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.fuzz_support import fuzz  # noqa: E402
from benchmarks.stack import local_stack  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--examples", type=int, default=200)
    parser.add_argument("--seed", type=int, default=1, help="0 derandomises (as in CI)")
    args = parser.parse_args()
    with local_stack(RATE_LIMIT_BURST="100000") as stack:
        report = fuzz(stack.base_url, args.examples, args.seed)
    print(
        json.dumps(
            {
                "operations": report.operations,
                "requests": report.requests,
                "statuses": dict(sorted(report.statuses.items())),
                "failures": len(report.failures),
            },
            indent=2,
        )
    )
    for failure in report.failures[:20]:
        print("\n" + failure)
    sys.exit(1 if report.failures else 0)


if __name__ == "__main__":
    main()
