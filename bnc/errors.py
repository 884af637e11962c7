"""The one error type users see: a single line, exit status 2 from the command line."""


class BncError(Exception):
    """A problem with the user's input: a file, a model, a shape or an option.

    The message is one line naming what was wrong, where, and what is accepted.
    """
