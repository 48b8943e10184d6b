"""The one error root: every error the CLI expects prints as one line, never a traceback."""


class LaunchError(Exception):
    """The root: a `UserError` (input or environment to fix) or a `provider.ProviderError` (the cloud said no)."""

    exit_code = 1  # what the command exits with when this ends it


class UserError(LaunchError):
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
    if isinstance(exc, LaunchError):
        text = str(exc)
    elif isinstance(exc, OSError) and exc.strerror:
        text = f"{exc.strerror}: {exc.filename}" if exc.filename else exc.strerror
    elif type(exc).__module__.split(".")[0] == "wandb":
        text = f"W&B: {exc}"
    elif type(exc).__module__.split(".")[0] in ("requests", "urllib3"):
        request = getattr(exc, "request", None)
        text = f"cannot reach {getattr(request, 'url', None) or 'the network'}: {network_cause(exc)}"
    else:
        text = f"unexpected {type(exc).__name__}: {exc} (run again with --debug for the traceback)"
    first = (text.strip().splitlines() or [type(exc).__name__])[0]
    return first if len(first) <= 400 else first[:397] + "..."


def network_cause(exc: BaseException) -> str:
    """What went wrong on the wire, in words a user can act on (the exception chain, innermost first)."""
    seen, chain = set(), []
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        chain.append(exc)
        exc = exc.__cause__ or exc.__context__ or next((a for a in getattr(exc, "args", ()) if isinstance(a, BaseException)), None)
    text = " ".join(f"{type(e).__name__} {e}" for e in chain)
    for needle, words in (
        ("NameResolution", "DNS lookup failed"),
        ("Name or service not known", "DNS lookup failed"),
        ("Temporary failure in name resolution", "DNS lookup failed"),
        ("ConnectionRefused", "connection refused"),
        ("Connection refused", "connection refused"),
        ("SSLError", "TLS handshake failed"),
        ("Timeout", "timed out"),
        ("timed out", "timed out"),
        ("Network is unreachable", "network unreachable"),
        ("ProxyError", "proxy refused"),
    ):
        if needle in text:
            return words
    return type(chain[-1]).__name__ if chain else "network error"
