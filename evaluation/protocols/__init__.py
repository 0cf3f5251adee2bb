"""Quality benchmark protocols on public datasets (``recpipe bench quality``).

Offers :data:`PROTOCOLS` (the protocol names), the per-protocol builders
(:mod:`~evaluation.protocols.msr_ml100k`, :mod:`~evaluation.protocols.recbole_ml1m`,
:mod:`~evaluation.protocols.fixed_split`,
:mod:`~evaluation.protocols.synthetic`), :func:`run_protocol` (tune on validation, fit,
score test) and :func:`format_table`. Splits live in :mod:`~evaluation.protocols.splits`.
"""

from evaluation.protocols.report import format_table
from evaluation.protocols.runner import ProtocolData, run_protocol

PROTOCOLS = ("msr-ml100k", "recbole-ml1m", "fixed-split", "synthetic")
"""Protocol names accepted by ``recpipe bench quality --protocol``."""

__all__ = ["PROTOCOLS", "ProtocolData", "format_table", "run_protocol"]
