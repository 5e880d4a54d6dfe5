"""ps's STATUS and the CREATED columns speak docker's durations."""

from __future__ import annotations

import pytest

from minirun.api.catalog import human_duration
from minirun.cli.lightcmds import status_text
from minirun.store import ContainerState


@pytest.mark.parametrize("seconds,text", [
    (0, "Less than a second"), (0.9, "Less than a second"), (1, "1 second"), (59.9, "59 seconds"),
    (60, "About a minute"), (119, "About a minute"), (120, "2 minutes"), (3599, "59 minutes"),
    (3600, "About an hour"), (5399, "About an hour"), (5400, "2 hours"), (47 * 3600, "47 hours"),
    (48 * 3600, "2 days"), (13 * 86400, "13 days"), (14 * 86400, "2 weeks"), (59 * 86400, "8 weeks"),
    (60 * 86400, "2 months"), (729 * 86400, "24 months"), (730 * 86400, "2 years")])
def test_durations_read_like_dockers(seconds, text):
    assert human_duration(seconds) == text


def test_status_reads_like_docker_ps():
    import datetime
    now = datetime.datetime.now(datetime.timezone.utc)
    three_min = (now - datetime.timedelta(minutes=3, seconds=5)).strftime("%Y-%m-%dT%H:%M:%S")
    assert status_text(ContainerState("running", pid=5, started=three_min)) == "Up 3 minutes"
    assert status_text(ContainerState("exited", exit_code=0, finished=three_min)) == "Exited (0) 3 minutes ago"
    assert status_text(ContainerState("exited", exit_code=137, finished=three_min, oom_killed=True)) == \
        "Exited (137) 3 minutes ago (OOM killed)"
    assert status_text(ContainerState("created")) == "Created"
