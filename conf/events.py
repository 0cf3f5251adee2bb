"""Settings: the event stream (Kafka) between the lookup service and ingest."""

from __future__ import annotations

from pydantic import Field

from conf.types import PositiveFloat, PositiveInt, Section


class EventStreamSettings(Section):
    """Where accepted events travel. Without ``kafka_bootstrap`` they go to the service's
    file spool (``serving.spool_dir``) and ``recpipe hourly`` ingests its files."""

    kafka_bootstrap: str | None = None
    """``host:port[,host:port]`` of the Kafka brokers; set, the service produces every
    accepted event to :attr:`topic` and ``recpipe consume`` ingests the topic."""
    topic: str = "recpipe.events"
    """Topic of accepted events, keyed by user id (one user's events stay in order)."""
    partitions: PositiveInt = 4
    """Partitions of :attr:`topic` when ``recpipe consume`` creates it."""
    retention_hours: PositiveInt = 7 * 24
    """``retention.ms`` of the topic. The consumer's worst-case lag must stay below it:
    events older than this that were never ingested are deleted by the broker."""
    replication: PositiveInt = 1
    """Replication factor of the topic when it is created (3 on a real cluster)."""
    group: str = "recpipe-ingest"
    """Consumer group of ``recpipe consume``; offsets are committed only after the Delta
    commit of the batch they cover."""
    produce_timeout_s: PositiveFloat = 5.0
    """How long a request waits for the broker's acknowledgement before its events go to
    the fallback spool instead (the answer is 202 either way, after one of the two)."""
    retry_s: PositiveFloat = 2.0
    """After a failed delivery the service writes straight to the fallback spool and
    probes the broker this often; when it answers, the spool is drained into the topic."""
    fallback_dir: str = "var/spool/kafka-fallback"
    """Spool of events the broker could not take; drained into the topic by the service."""
    batch_max_events: PositiveInt = 200_000
    """Most events ``recpipe consume`` ingests in one Delta commit."""
    batch_max_s: PositiveFloat = 30.0
    """A batch is closed this many seconds after its first event, however small."""
    linger_ms: int = Field(default=5, ge=0, le=1000)
    """Producer batching delay (``linger.ms``): a little latency for far fewer requests."""
