"""The error of a model's spec, shared by the spec and what it is built from (its expressions).
Callers report it as a user's mistake: one line, exit 2 (``python -m training``)."""


class SpecError(Exception):
    """A spec file is missing, malformed, or names something that does not exist."""
