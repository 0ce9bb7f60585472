"""Export a saved student as the complete inference program, in its hardware's own terms.

``codesign export STUDENT --out DIR`` (:func:`export_student`) writes a bundle: the whole float
inference as ONNX (:mod:`.onnx_graph`), QONNX for FPGA students, the front end as arrays, and
the device layer in the device's native format (``Device.export_layer``), all listed with their
checksums in ``export.json`` (:mod:`.bundle`). :func:`load_export` rebuilds the student from
those files alone; :func:`verify_export` checks the round trip against the original.
"""

from __future__ import annotations

from .bundle import (
    SCHEMA,
    VERSION,
    Check,
    ExportedModel,
    VerifyReport,
    export_student,
    load_export,
    manifest_digest,
    read_manifest,
    verify_export,
)

__all__ = [
    "Check",
    "ExportedModel",
    "SCHEMA",
    "VERSION",
    "VerifyReport",
    "export_student",
    "load_export",
    "manifest_digest",
    "read_manifest",
    "verify_export",
]
