"""The one exception type for mistakes a user can fix."""


class UserError(Exception):
    """A mistake in the command line, the config or the data: one line, exit 2."""

    exit_code = 2
