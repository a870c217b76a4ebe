"""`cohort.csv`: one row per case of an output folder, rebuilt from every `<name>_summary.json` and
`<name>_error.json` there, so runs of different shards into one folder merge. A case with an error record is
`failed` (its latest attempt failed); one with only a summary is `done`."""
from __future__ import annotations

import csv
import logging
from pathlib import Path
from typing import Dict, List

from ..errors import DiskFullError
from ..inference.case_outputs import ERROR_SUFFIX, SUMMARY_SUFFIX, read_record
from ..io.atomic import atomic_file
from ..io.disk_space import room_for

log = logging.getLogger(__name__)

TABLE_FILE = "cohort.csv"


def write_cohort_table(folder: Path) -> Path:
    """Rebuild `folder`/cohort.csv atomically from the case records in `folder`; return its path. Without room
    for it, the old table is removed (a table that lists what is not there is worse than none): DiskFullError."""
    folder = Path(folder)
    records: Dict[str, dict] = {}
    for suffix, status in ((SUMMARY_SUFFIX, "done"), (ERROR_SUFFIX, "failed")):
        for path in sorted(folder.glob(f"*{suffix}")):
            record = read_record(path)
            if record is None:
                log.warning("skipped %s in %s: it is not a readable JSON record", path.name, TABLE_FILE)
                continue
            records[path.name[: -len(suffix)]] = {**record, "status": status}
    organs = _organs(records.values())
    header = ["name", "input", "status", *(f"{organ}_ml" for organ in organs), "warnings", "total_s", "model",
              "model_sha256", "error"]
    target = folder / TABLE_FILE
    try:
        with room_for(folder, TABLE_FILE, f"the old {TABLE_FILE}, which no longer matched the folder, was removed; "
                      "run the same command again once there is room, to rebuild it"):
            with atomic_file(target) as tmp:
                with tmp.open("w", newline="", encoding="utf-8") as handle:
                    writer = csv.writer(handle)
                    writer.writerow(header)
                    for name in sorted(records):
                        writer.writerow(_row(name, records[name], organs))
    except DiskFullError:
        target.unlink(missing_ok=True)
        raise
    return target


def _organs(records) -> List[str]:
    """Every organ with a volume, in class order (label value) where a summary gives it, then by name."""
    order: Dict[str, float] = {}
    for record in records:
        labels = {name: int(value) for value, name in (record.get("labels") or {}).items()}
        for organ in record.get("volumes_ml") or {}:
            order[organ] = min(order.get(organ, float("inf")), labels.get(organ, float("inf")))
    return sorted(order, key=lambda organ: (order[organ], organ))


def _row(name: str, record: dict, organs: List[str]) -> list:
    volumes = record.get("volumes_ml") or {}
    model = record.get("model") or {}
    failed = record["status"] == "failed"
    return [name, record.get("input", ""), record["status"],
            *("" if failed else volumes.get(organ, "") for organ in organs),
            "; ".join(record.get("warnings") or []), (record.get("timings_s") or {}).get("total", ""),
            model.get("name", ""), model.get("sha256", ""), record.get("error", "")]
