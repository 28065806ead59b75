"""A file written whole or not at all: the host's outputs (reports, plots, the change journal)
are made beside their target and renamed into place, so a full disk or a killed process never
leaves half a file where the old one was."""
import os
from contextlib import contextmanager


@contextmanager
def replacing(path, suffix=".part"):
    """Yields a temporary path beside `path`. If the block ends normally, the file there
    replaces `path`; on any exception it is removed and the exception goes on."""
    tmp = str(path) + suffix
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
