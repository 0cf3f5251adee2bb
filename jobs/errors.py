"""Domain exceptions of the data jobs."""


class RecpipeError(Exception):
    """Base of recpipe's domain errors."""


class SchemaMismatch(RecpipeError, ValueError):
    """Data written to a table does not match the table's declared schema."""


class SourceError(RecpipeError, ValueError):
    """An input source is missing, unreadable or lacks required columns."""


class EmptyInput(RecpipeError, ValueError):
    """A job found no input rows for the partition it was asked to build."""
