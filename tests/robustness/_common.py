"""Shared by the robustness tests: the tiny run they damage, and the error lines a command printed."""

from __future__ import annotations


def error_lines(err: str) -> list[str]:
    """The lines of ``err`` that report an error (``error: ...``, or an exception's one line such as
    ``RunLocked: ...``); progress lines ("figures: 2/9 uplots") and warnings (a logged epoch's
    floor or ceiling note) are not errors. A refused command prints exactly one."""
    out = []
    for ln in err.strip().splitlines():
        head = ln.split(":", 1)[0]
        if ln.startswith("error:") or head.endswith(("Error", "Locked", "Damaged", "Full")) or "Traceback" in ln:
            out.append(ln)
    return out


#: A run small enough to train in seconds: every logged epoch, K-means K = 4, KDE only.
TINY = ["--data", "synthetic", "--size", "32", "--width", "2", "--epochs", "2", "--batch", "8", "--schedule", "all",
        "--set", "data.n_synthetic=24", "--set", "mi.kmeans_k=4", "--set", 'mi.estimators=["kde"]', "--quiet"]
