"""The record of a namespace crowded with NetworkPolicies is still a decision the metrics and the alerts see.

Its line used to exceed Cloud Logging's 256 KB entry limit, so it never became the ``jsonPayload`` the filters read
(``responder/report/bounds.py`` bounds it now). Here the bounded line goes through the module's own filters, as the
LogEntry Cloud Run makes of it, and must still be counted as a decision and as a containment.
"""

from __future__ import annotations

from tests.terraform.test_monitoring import cloud_run_entry, line_of, log_filter, matching
from tests.unit.test_containment import make, run
from tests.unit.test_record_bounds import CLOUD_LOGGING_LIMIT, crowded_namespace


def test_a_crowded_namespace_contained_is_still_a_decision_and_a_containment() -> None:
    line = line_of(run(make(crowded_namespace(), netpol_enforcement="established")))
    entry = cloud_run_entry(line)
    assert len(line) < CLOUD_LOGGING_LIMIT // 2  # with room for Cloud Run's own fields in the entry
    assert entry["jsonPayload"]["truncated"]["actions[].changes"] > 0  # bounded, and says so
    entries = {"crowded": entry}
    assert matching(log_filter("decision_filter"), entries) == {"crowded"}
    assert matching(log_filter("containment_filter"), entries) == {"crowded"}
    assert matching(log_filter("failure_filter"), entries) == set()  # contained: nothing to page about
