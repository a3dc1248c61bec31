"""Stage 3a, containment: the actions and the runner that gates and orders them.

One module per action (``label``, ``isolate``, ``capture``, ``delete``: parameters, required permissions and an
example in each docstring; ``detach``, isolate's second half, held until SCC vouches), the single catalogue
(``registry``: add an action there and the policy file accepts it), what they share, one concept a module
(``action``: what an action is and declares; ``context``: what it runs with, and the one pod patch; ``results``: how
it ends; ``keys``: the labels and annotations the responder writes), a plan and its ordering rules (``plan``), SCC
verification of the message (``verification``), the blast-radius budget (``budget``), undoing a refuted delivery
(``undo``), the NetworkPolicy judgements isolation, duplicates and release share (``netpol``), what the dataplane
does to an established connection (``enforcement``), the container's sockets (``sockets``), where a response's
progress lives (``progress``), what waits for the isolating writes (``scheduling``) and the ``runner``, which also
reaches the cluster and the pod (its ``connect()`` and ``read_pod()``).
May import ``intake``, ``investigation`` (the owner chain read once for both), ``ports``, ``config``, ``errors``.
"""
