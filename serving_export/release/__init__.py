"""The release layer: from the lake and the gate's verdict to a published release.

A release is a directory ``releases/<release_id>/`` written once (DESIGN.md section 4).

- :mod:`~serving_export.release.format`: the on-disk layout, id encoding, checksums;
- :mod:`~serving_export.release.arrays`: pure builders of the release's arrays;
- :mod:`~serving_export.release.data`: :class:`ReleaseData`, what a release holds;
- :mod:`~serving_export.release.writer`: :func:`write_release`, full or incremental;
- :mod:`~serving_export.release.reader`: :func:`verify_release` and :class:`Release`,
  every array memory-mapped (the only module the service reads releases with);
- :mod:`~serving_export.release.publish`: the ``CURRENT`` pointer, its history, rollback
  and pruning; :mod:`~serving_export.release.promotion` keeps the MLflow ``champion`` alias
  on the live release;
- :mod:`~serving_export.release.export`: ``recpipe export``, the nightly's release;
- :mod:`~serving_export.release.hourly`: the hourly incremental release;
- :mod:`~serving_export.release.cli`: ``recpipe release ...``.

Nothing is imported here: import the module you need.
"""
