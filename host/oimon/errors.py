class OimonError(Exception):
    """A user-facing error: printed as one line on stderr, exit status 2, no traceback."""


def read_json(path, what="file"):
    """A JSON file the user named (plan, config): its content, or one clear OimonError.
    Untrusted: bounded size and nesting (no RecursionError), NaN/Infinity and duplicate keys
    refused (oimon.validate.loads)."""
    from oimon import validate
    try:
        with open(path, "rb") as f:
            data = f.read(validate.MAX_JSON_BYTES + 1)
    except OSError as e:
        raise OimonError("%s %s: cannot read (%s)" % (what, path, e.strerror or e))
    return validate.loads(data, "%s %s" % (what, path))
