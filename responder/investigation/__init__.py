"""Stage 3b, investigation: the runbook's reading steps, concurrently with containment.

Owns cluster, node and pod facts with the Kubernetes owner chain (``investigator``, whose ``owner_chain()`` evidence
capture walks too), the Cloud Logging filters (``logfilters``), what the pod's service account may do (``rights``:
the RBAC bindings naming it) and the console links and commands a responder would use (``links``). Talks to the
outside only through ``responder.ports``. May import ``intake``, ``ports``, ``errors``.
"""
