"""What can go wrong with MNIST on disk, each with a message that says what to do."""


class DataFormatError(ValueError):
    """A file that is not what it claims to be: bad IDX header, wrong size, or wrong checksum."""


class MnistUnavailableError(RuntimeError):
    """MNIST could not be made available; the message names every source tried and the fix."""


class SourceError(Exception):
    """One source could not deliver; the message is the reason shown to the user."""
