"""Shared by the robustness tests: the error lines a command printed on stderr."""

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
