"""Text output shared by evaluation reports and comparisons: Markdown tables, JSON numbers, atomic writes."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence

from ..io.atomic import StagedOutputs


def shortlist(names: Sequence[str], limit: int = 5) -> str:
    """The first `limit` names, and how many more; "none" for none."""
    return ", ".join(names[:limit]) + (f" and {len(names) - limit} more" if len(names) > limit else "") or "none"


def write_text_files(directory: Path, texts: Mapping[str, str]) -> List[Path]:
    """Write `{file name: text}` into `directory` as one atomic set (all files or none)."""
    with StagedOutputs(Path(directory)) as staged:
        for name, text in texts.items():
            staged.path(name).write_text(text, encoding="utf-8")
        return staged.commit()


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A GitHub-flavoured Markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def json_numbers(values: Mapping[str, float]) -> Dict[str, Optional[float]]:
    """NaN -> None (JSON null), since JSON has no NaN; other values unchanged."""
    return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in values.items()}


def nan_numbers(values: Mapping[str, Optional[float]]) -> Dict[str, float]:
    """Inverse of `json_numbers`: None -> NaN."""
    return {k: (math.nan if v is None else v) for k, v in values.items()}
