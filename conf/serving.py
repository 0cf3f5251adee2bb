"""Settings: Releases and the lookup service."""

from __future__ import annotations

from pydantic import Field, SecretStr, field_validator

from conf.types import Fraction, NonNegInt, PositiveFloat, PositiveInt, Section


class ServingSettings(Section):
    """Releases and the lookup service."""

    releases_root: str = "var/releases"
    """Folder holding ``<release_id>/`` directories, ``CURRENT`` and ``HISTORY``."""
    keep_releases: PositiveInt = 5
    """``recpipe release prune`` keeps this many newest releases (plus CURRENT and the
    rollback target, which are never deleted)."""
    host: str = "127.0.0.1"
    """Address the lookup service binds to."""
    port: int = Field(default=8000, ge=1, le=65535)
    """TCP port of the lookup service."""
    api_key: SecretStr | None = None
    """Key required in the ``X-API-Key`` header of write requests (``POST /events/...``).
    Set it through ``RECPIPE_SERVING__API_KEY``; without it every write is refused."""
    redis_url: str | None = None
    """``redis://host:port/db`` of the real-time store; unset means an in-process store."""
    workers: PositiveInt = 1
    """Worker processes on the one port (``recpipe serve --workers``). They share the
    release through the page cache and the real-time store through Redis, so more than one
    needs ``redis_url``."""
    redis_timeout_s: PositiveFloat = 0.05
    """Socket timeout of one Redis call; past it the answer is served degraded."""
    redis_retry_s: PositiveFloat = 1.0
    """After a Redis failure, calls are skipped (answers degraded) for this many seconds."""
    recent_items: PositiveInt = 50
    """Most recent interacted items kept per user in the real-time store."""
    recent_ttl_s: PositiveInt = 7 * 24 * 3600
    """A user's real-time history expires this many seconds after their last event."""
    inprocess_max_users: PositiveInt = 100_000
    """The in-process store forgets least recently active users past this count."""
    spool_dir: str = "var/spool/events"
    """Folder of the durable event spool (JSON lines read by ``recpipe ingest --source``)."""
    spool_rotate_bytes: PositiveInt = 64 * 1024 * 1024
    """A spool file is closed and a new one opened past this size (bytes)."""
    spool_rotate_s: PositiveInt = 300
    """A spool file is closed after this many seconds, so ingest sees recent events."""
    max_n: PositiveInt = 100
    """Largest ``n`` a request may ask for."""
    default_n: PositiveInt = 20
    """``n`` when a request does not say."""
    max_batch_users: PositiveInt = 1000
    """Most users in one ``POST /recommendations/batch``."""
    max_rerank_items: PositiveInt = 1000
    """Most item ids in one ``POST /recommendations/rerank``."""
    max_events: PositiveInt = 500
    """Most events in one ``POST /events/interactions``."""
    max_body_bytes: PositiveInt = 1024 * 1024
    """Request bodies larger than this are refused with 413."""
    reload_poll_s: PositiveFloat = 2.0
    """How often the service checks ``CURRENT`` for a new release (seconds)."""
    verify_hashes: bool = True
    """The service checks every file's SHA-256 before serving a release (sizes and the
    manifest checksum are always checked). Hashing reads the whole release: about 4 s for a
    1.3 GB release of 1M users x top-100 on a busy 2-core machine; publish hashes too."""
    answer_cache_entries: NonNegInt = 16384
    """Serialised item arrays of answers kept per loaded release (about 2 KiB each for 20
    items), looked up by the answer's entries or, for an unchanged head of a precomputed list,
    by (surface, user, n); 0 turns the cache off."""
    blend_share: Fraction = 0.2
    """Share of an answer's slots given to items similar to the user's last interactions."""
    blend_seeds: PositiveInt = 3
    """How many of the user's most recent (non-skip) items seed the similar-items blend."""
    blend_per_seed: NonNegInt = 10
    """Similar items looked at per seed item."""

    @field_validator("api_key", mode="before")
    @classmethod
    def _key_as_text(cls, value: object) -> object:
        # Environment values are parsed as YAML scalars: a numeric key arrives as a number.
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        if isinstance(value, str) and not value.strip():
            return None
        return value
