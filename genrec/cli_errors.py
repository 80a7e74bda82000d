"""Which exceptions the ``genrec`` CLI reports as one line, and how that line reads.

The CLI's contract: bad input (wrong values, malformed or missing files, a folder that is not what the verb
reads) and faults of the environment (permissions, a full disk, an offline or unreachable Hub) end in one
line ``genrec VERB: error: ...`` on stderr and exit status 2. Anything else is a bug of genrec and keeps its
traceback. ``KeyError``/``TypeError``/``AttributeError`` are therefore *not* user errors: library code
that means "unknown id" raises :class:`genrec.tokenization.code_table.UnknownItemError` (a ``ValueError``).

Kept in its own module so that the classification is one list, testable without running a verb.
"""

from __future__ import annotations

import functools

#: Exit status of a verb that stopped on bad input or an environment fault (argparse's own usage errors use 2 too).
USER_ERROR_EXIT = 2


@functools.cache
def user_error_types() -> tuple[type[BaseException], ...]:
    """Exception classes that mean "bad input or environment", never "bug in genrec".

    * ``ValueError`` (bad values; ``datasets``' and genrec's format errors derive from it),
    * ``OSError`` (missing/unreadable/unwritable files, permissions, disk full; ``huggingface_hub``'s
      offline-mode, HTTP and not-found errors and ``requests``' connection errors derive from it),
    * ``safetensors``' ``SafetensorError`` (a truncated or corrupt ``.safetensors`` file),
    * the HTTP client's transport errors used by ``huggingface_hub`` (a Hub that cannot be reached).
    """
    types: list[type[BaseException]] = [ValueError, OSError]
    try:
        from safetensors import SafetensorError

        types.append(SafetensorError)
    except ImportError:  # pragma: no cover - safetensors is a dependency
        pass
    for module_name in ("httpx2", "httpx"):
        try:
            module = __import__(module_name)
        except ImportError:
            continue
        types.append(module.HTTPError)
    return tuple(types)


def one_line(error: BaseException) -> str:
    """The message of ``error`` on one line (first line of a multi-line message, plus a hint to use -v)."""
    text = str(error.args[0]) if isinstance(error, KeyError) and error.args else str(error)
    text = text.strip() or type(error).__name__
    if isinstance(error, OSError) and error.filename and str(error.filename) not in text:
        text = f"{text}: {error.filename}"
    lines = [line for line in text.splitlines() if line.strip()]
    if len(lines) > 1:
        return f"{lines[0].strip()} (more with -v)"
    return lines[0].strip()
