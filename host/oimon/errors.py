import json


class OimonError(Exception):
    """A user-facing error: printed as one line on stderr, exit status 2, no traceback."""


def read_json(path, what="file"):
    """A JSON file the user named (plan, config): its content, or one clear OimonError."""
    try:
        with open(path) as f:
            return json.load(f)
    except OSError as e:
        raise OimonError("%s %s: cannot read (%s)" % (what, path, e.strerror))
    except ValueError as e:
        raise OimonError("%s %s: not valid JSON (%s)" % (what, path, str(e).splitlines()[0]))
