class OimonError(Exception):
    """A user-facing error: printed as one line on stderr, exit status 2, no traceback."""
