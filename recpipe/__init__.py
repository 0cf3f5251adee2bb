"""recpipe: the command-line front of the pipeline (see ``recpipe --help``)."""
