"""One self-contained HTML report of one or several runs (figures embedded as base64 PNG).

* :func:`write_report` -- write the report of runs to a file (default ``RUN/report.html``).
* :func:`render_report` -- the same document as a string.
* :func:`data_facts`, :func:`final_estimates`, :func:`ceiling_warnings`, :func:`read_claims` --
  the pieces, usable on their own.
* :func:`quality_rows`, :func:`read_robustness`, :func:`find_uncertainty`, :func:`find_robustness`
  -- the "Estimate quality" and "Robustness of the claims" sections' tables. The report only
  reads: the tables are computed by ``infoflow estimate`` (or ``infoflow report --quality``).
"""

from .html import (
    CLAIMS_FILE,
    ceiling_warnings,
    data_facts,
    final_estimates,
    read_claims,
    render_report,
    run_summary,
    write_report,
)
from .quality import (
    find_robustness,
    find_uncertainty,
    quality_rows,
    read_robustness,
)

__all__ = ["CLAIMS_FILE", "ceiling_warnings", "data_facts", "final_estimates", "find_robustness",
           "find_uncertainty", "quality_rows", "read_claims", "read_robustness", "render_report", "run_summary",
           "write_report"]
