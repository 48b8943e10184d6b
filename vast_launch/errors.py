"""Errors that are the user's to fix: the CLI prints them as one line, never a traceback."""


class UserError(Exception):
    """A problem with the user's input or environment, reported as one clear line."""


class CheckFailed(UserError):
    """One or more pre-launch checks failed; each failure is one line."""

    def __init__(self, failures: list[str]):
        self.failures = failures
        super().__init__("; ".join(failures))
