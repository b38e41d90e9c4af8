"""Exceptions raised for bad input. Each message names the file, setting or value at fault."""

from __future__ import annotations


class InfoflowError(ValueError):
    """Base class: a user-facing error with a message that says what is wrong and where."""


class DataError(InfoflowError):
    """A data source (folder, zip, PNG, mask) is missing or malformed."""


class ConfigError(InfoflowError):
    """A setting has a value the tool cannot use."""


class RunError(InfoflowError):
    """A run directory is missing, incomplete or inconsistent."""


class RunDamaged(RunError):
    """A file of a run is damaged (unreadable, wrong columns or values, cut short): never skipped
    as "not available", always reported, naming the file."""


class RunLocked(RunError):
    """Another process writes this run now (it holds ``RUN/.lock``)."""


class StorageFull(RunError):
    """A file cannot be written because the disk, the quota or the file size limit is full.
    The file being written is named; the write left the earlier version of the file in place."""


class ProbeError(InfoflowError):
    """Activation capture failed (for example a requested layer produced nothing)."""
