"""Errors that are the user's to fix: the CLI prints them as one line, never a traceback."""


class UserError(Exception):
    """A problem with the user's input or environment, reported as one clear line."""


class CheckFailed(UserError):
    """One or more pre-launch checks failed; each failure is one line."""

    def __init__(self, failures: list[str]):
        self.failures = failures
        super().__init__("; ".join(failures))


class ConfigInvalid(UserError):
    """Every problem in a config, each naming its key; one line each."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("\n".join(problems))


def one_line(exc: BaseException) -> str:
    """Any error as one line with its cause first; unexpected ones point at `--debug`."""
    from .provider import ProviderError

    if isinstance(exc, (UserError, ProviderError)):
        text = str(exc)
    elif isinstance(exc, OSError) and exc.strerror:
        text = f"{exc.strerror}: {exc.filename}" if exc.filename else exc.strerror
    elif type(exc).__module__.split(".")[0] == "wandb":
        text = f"W&B: {exc}"
    elif type(exc).__module__.split(".")[0] in ("requests", "urllib3"):
        from .vast import network_cause

        request = getattr(exc, "request", None)
        text = f"cannot reach {getattr(request, 'url', None) or 'the network'}: {network_cause(exc)}"
    else:
        text = f"unexpected {type(exc).__name__}: {exc} (run again with --debug for the traceback)"
    first = (text.strip().splitlines() or [type(exc).__name__])[0]
    return first if len(first) <= 400 else first[:397] + "..."
