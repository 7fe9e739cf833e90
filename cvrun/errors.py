"""The one exception type for mistakes a user can fix."""

# How PyTorch's DataLoader re-raises an exception from a worker: this header, then the worker's traceback.
_WORKER_HEADER = "Caught UserError in DataLoader worker"


class UserError(Exception):
    """A mistake in the command line, the config or the data: one line, exit 2."""

    exit_code = 2

    def __init__(self, message: str):
        # A worker's UserError (an undecodable image file) arrives with its traceback in
        # the message; the user needs only its last line, the original message.
        if message.startswith(_WORKER_HEADER):
            message = message.rstrip().splitlines()[-1].split("UserError: ", 1)[-1]
        super().__init__(message)


def require(ok: bool, message: str) -> None:
    """A UserError with `message` unless `ok`: the range checks of config schemas."""
    if not ok:
        raise UserError(message)


class ResumeRefused(UserError):
    """trainer.resume cannot carry a run on (its data changed): the run's own record stays as it was."""
