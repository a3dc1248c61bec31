"""Stage 1-2, intake and triage: bytes from Pub/Sub → a validated :class:`~responder.intake.triage.Target`, or a reason.

Owns the envelope shapes (``envelope``), bounded JSON (``safejson``), the proto3-JSON notification models
(``notification``, ``proto_enums``), the domain ``Finding`` with its cross-field checks (``findings``), what each
finding category means (``categories``: its profile), identifier validation (``identifiers``), sanitising
(``sanitize``), the act/ignore/reject decision (``triage``), what the deployment covers (``scope``: its fleet, its
canary's source) and the harmless test finding (``sample``). Pure: no I/O.
May import only ``responder.errors``.
"""
