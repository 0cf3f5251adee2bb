"""What the service holds between requests: the live release, the stores, hot reload."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from pathlib import Path

from conf.errors import ReleaseError
from conf.events import EventStreamSettings
from conf.serving import ServingSettings
from serving_export.release.publish import current_release
from serving_export.release.reader import Release
from serving_export.service.metrics import Metrics
from serving_export.service.realtime import RealtimeStore, make_store
from serving_export.service.recommend import Blend
from serving_export.service.spool import EventSpool, GroupCommitSpool
from serving_export.service.stream import EventStream

logger = logging.getLogger(__name__)


class ServiceState:
    """The live release (one reference, swapped whole) and the service's helpers.

    Args:
        settings: the serving settings.
        store: real-time store (default: from settings).
        spool: event spool (default: from settings).
        stream: the event stream settings; with ``kafka_bootstrap`` set, events go to Kafka
            (the fallback spool when the broker cannot take them) instead of the spool.
    """

    def __init__(self, settings: ServingSettings, store: RealtimeStore | None = None,
                 spool: EventSpool | None = None, stream: EventStreamSettings | None = None):
        self.settings = settings
        self.root = Path(settings.releases_root)
        self.store = store if store is not None else make_store(settings)
        self._spool = spool
        self.spool: GroupCommitSpool | None = GroupCommitSpool(spool) if spool else None
        self.metrics = Metrics()
        self.release: Release | None = None
        self.load_s: float | None = None
        self.refused: dict[str, str] = {}
        self.blend = Blend(settings.blend_share, settings.blend_seeds, settings.blend_per_seed)
        key = settings.api_key.get_secret_value() if settings.api_key else None
        self.api_key: bytes | None = key.encode() if key else None
        self._task: asyncio.Task | None = None
        self.stream_settings = stream if stream is not None and stream.kafka_bootstrap else None
        self.stream: EventStream | None = None

    async def record_events(self, records: list[dict]) -> str:
        """Hold accepted events durably (Kafka, else the spool); return where they went.

        Raises:
            SpoolError: they could not be recorded durably anywhere.
        """
        if self.stream_settings is None:
            await self.event_spool().append(records)
            return "spool"
        if self.stream is None:
            self.stream = EventStream(self.stream_settings,
                                      lambda path, n: self.metrics.event_paths.labels(path).inc(n))
        return await self.stream.publish(records)

    def event_spool(self) -> GroupCommitSpool:
        """The spool, opened on first use (so a read-only replica needs no spool folder)."""
        if self.spool is None:
            self._spool = EventSpool(self.settings.spool_dir, self.settings.spool_rotate_bytes,
                                     self.settings.spool_rotate_s)
            self.spool = GroupCommitSpool(self._spool)
        return self.spool

    async def check_reload(self) -> bool:
        """Load the release ``CURRENT`` names if it is new; return True if swapped.

        The release is verified and mapped in a worker thread; a release that fails is
        remembered, counted and not tried again, and the old one keeps serving.
        """
        try:
            wanted = await asyncio.to_thread(current_release, self.root)
        except ReleaseError as exc:
            logger.error("cannot read CURRENT: %s", exc)
            return False
        if wanted is None or wanted in self.refused:
            return False
        if self.release is not None and self.release.id == wanted:
            return False
        start = time.perf_counter()
        try:
            release = await asyncio.to_thread(Release.load, self.root / wanted,
                                              verify=self.settings.verify_hashes)
        except ReleaseError as exc:
            self.refused[wanted] = str(exc)
            self.metrics.reload_failures.inc()
            logger.error("refused release %s, still serving %s: %s", wanted,
                         self.release.id if self.release else None, exc)
            return False
        load_s = time.perf_counter() - start
        release.answer_cache_limit = self.settings.answer_cache_entries
        old = self.release
        self.release = release
        self.load_s = load_s
        self.metrics.set_release(release.id, load_s)
        logger.info("serving release %s (was %s), loaded in %.3fs", release.id,
                    old.id if old else None, load_s)
        return True

    async def _loop(self) -> None:
        while True:
            try:
                await self.check_reload()
                if self._spool is not None:
                    await asyncio.to_thread(self._spool.maybe_rotate)
            except Exception:  # the poller must survive anything and keep the old release
                logger.exception("reload check failed")
            await asyncio.sleep(self.settings.reload_poll_s)

    def start(self) -> None:
        """Start polling ``CURRENT`` (the first check runs at once)."""
        self._task = asyncio.get_running_loop().create_task(self._loop())

    async def stop(self) -> None:
        """Stop polling, close the store, seal the spool file."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.store.close()
        if self._spool is not None:
            self._spool.close()
        if self.stream is not None:
            await asyncio.to_thread(self.stream.close)
