"""What `segment` tells the terminal about a finished case, from its summary record: the time and where it ran,
the organ volumes (a table that --quiet drops) and the warnings (never dropped), worded as the Slicer module's
status log words them."""
from __future__ import annotations

import sys
from typing import List


def report_case(name: str, summary: dict, quiet: bool) -> None:
    """Print case `name`'s table (unless `quiet`) and then its warnings, one `warning: ...` line each, to stderr."""
    lines = [] if quiet else result_table(name, summary)
    lines += [f"warning: {warning}" for warning in summary.get("warnings") or []]
    if lines:
        print("\n".join(lines), file=sys.stderr, flush=True)


def result_table(name: str, summary: dict) -> List[str]:
    """`NAME: done in S s on DEVICE (BACKEND, PRECISION)`, then one `  ORGAN  V mL` line per organ."""
    seconds = (summary.get("timings_s") or {}).get("total", 0.0)
    lines = [f"{name}: done in {seconds:.1f} s on {summary['device']} ({summary['backend']}, {summary['precision']})"]
    volumes = summary.get("volumes_ml") or {}
    width = max((len(organ) for organ in volumes), default=0)
    lines += [f"  {organ:<{width}}  {volume:9.1f} mL" for organ, volume in volumes.items()]
    return lines
