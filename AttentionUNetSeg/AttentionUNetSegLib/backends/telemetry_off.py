"""Third-party usage statistics, kept off in the processes this package runs (the command line, the worker).

`import openvino` sends a usage event to Google Analytics unless the user has opted out (OpenVINO's
`opt_in_out --opt_out`), NNCF sends more while it quantizes, and their sending thread outlives the work. A tool
that reads patients' scans should not reach the network unasked, nor wait for it at its exit, so these
processes run OpenVINO and NNCF as if the `openvino-telemetry` package were not installed, which both handle
by sending nothing.
"""
from __future__ import annotations

import sys

TELEMETRY_MODULE = "openvino_telemetry"


def keep_telemetry_off() -> None:
    """Make `import openvino_telemetry` fail in this process. Call it before OpenVINO or NNCF is imported: a
    module already loaded stays loaded."""
    sys.modules.setdefault(TELEMETRY_MODULE, None)
