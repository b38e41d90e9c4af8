"""The ``infoflow`` command.

Each command lives in its own module of this package and registers itself on :data:`app`;
errors of bad input (:class:`infoflow.errors.InfoflowError`) are printed as one clear line and
exit with status 2, without a traceback.
"""

from __future__ import annotations

import sys
import warnings

import typer

from ..errors import InfoflowError

app = typer.Typer(
    name="infoflow",
    help="Information flow through U-Nets while they train (after Lee & Bajic, ISBI 2021).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _register() -> None:
    # Import for their side effect: each module adds its commands to `app`.
    from . import train_cmd  # noqa: F401
    for optional in ("estimate_cmd", "plot_cmd", "reproduce_cmd"):
        try:
            __import__(f"{__name__}.{optional}")
        except ModuleNotFoundError as exc:
            if exc.name != f"{__name__}.{optional}":
                raise


_register()


def _one_line(message, category, filename, lineno, file=None, line=None) -> None:  # noqa: ANN001 - warnings'
    """A warning shown as one line on stderr: ``warning: <message>``."""
    typer.secho(f"warning: {message}", fg=typer.colors.YELLOW, err=True)


def main(argv: list[str] | None = None) -> int:
    saved = warnings.showwarning
    warnings.showwarning = _one_line
    try:
        app(args=argv, standalone_mode=False)
    except InfoflowError as exc:
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        return 2
    except (typer.Abort, KeyboardInterrupt):  # ^C, or SIGTERM during a sweep (Ray is shut down first)
        typer.secho("aborted", err=True)
        return 130
    except SystemExit as exc:  # click's own usage errors
        return int(exc.code or 0)
    except Exception as exc:
        # Usage errors (click's, or typer's vendored click) carry show() and their own exit code.
        if callable(getattr(exc, "show", None)) and isinstance(getattr(exc, "exit_code", None), int):
            exc.show()
            return exc.exit_code
        raise
    finally:
        warnings.showwarning = saved
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
