pytest_plugins = [
    "tests.support.kube",
    "tests.support.google_fakes",
    "tests.support.pubsub_emulator",
    "tests.support.ffserver",
]
