"""Stage 4, report: the one decision record per event (``record``), the handling outcome (``outcome``) and the
incident report for owners: schema (``models``), assembly (``builder``), Markdown (``markdown``), next steps for a
human (``next_steps``) and the owning team to contact (``owning_team``, people, not ownerReferences). May import every
lower stage, ``ports`` and ``errors``.
"""
