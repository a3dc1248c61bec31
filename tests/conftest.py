import os

# The tests' clusters are taken to cut established connections (the local node's dataplane does, in its default
# `established` mode; GKE Dataplane V2 does) unless a test states another behaviour: with a kubeconfig the
# responder's `auto` would assume new-only and escalate every isolation to a delete. Tests of `auto`, `new-only` and
# `none` set RESPONDER_NETPOL_ENFORCEMENT themselves (a Settings argument or the replay's environment).
os.environ.setdefault("RESPONDER_NETPOL_ENFORCEMENT", "established")

pytest_plugins = [
    "tests.support.kube",
    "tests.support.google_fakes",
    "tests.support.pubsub_emulator",
    "tests.support.ffserver",
]
