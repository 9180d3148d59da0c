"""Run outputs: ``metrics.json``/``transfer.json``, figures and ``report.md`` (docs/design.md, "Outputs")."""

from ..labels import colorize
from .figures import asr_curve, attack_panel, transfer_heatmap
from .markdown import summary_table, write_report
from .metrics_json import (
                           SCHEMA_VERSION,
                           check_transfer,
                           validate_metrics,
                           write_metrics,
                           write_transfer,
)

__all__ = ["SCHEMA_VERSION", "asr_curve", "attack_panel", "check_transfer", "colorize",
           "summary_table", "transfer_heatmap", "validate_metrics", "write_metrics",
           "write_report", "write_transfer"]
