"""imageconfig: what commit and import write into a config."""

from __future__ import annotations

import pytest

from minirun.errors import UsageError
from minirun.oci.imageconfig import apply_changes, new_config

BASE = {"architecture": "amd64", "os": "linux", "created": "2024-01-01T00:00:00Z",
        "config": {"Cmd": ["/app"], "Env": ["PATH=/bin", "A=1"]},
        "rootfs": {"type": "layers", "diff_ids": ["sha256:" + "1" * 64]},
        "history": [{"created": "2024-01-01T00:00:00Z", "created_by": "base"}]}


def test_new_config_appends_layer_and_history_and_leaves_base_alone():
    doc = new_config(BASE, "sha256:" + "2" * 64, "2026-01-01T00:00:00Z", "minirun commit: sh",
                     comment="msg", author="me")
    assert doc["rootfs"]["diff_ids"] == ["sha256:" + "1" * 64, "sha256:" + "2" * 64]
    assert doc["history"][-1] == {"created": "2026-01-01T00:00:00Z", "created_by": "minirun commit: sh",
                                  "comment": "msg", "author": "me"}
    assert doc["created"] == "2026-01-01T00:00:00Z" and doc["author"] == "me"
    assert BASE["rootfs"]["diff_ids"] == ["sha256:" + "1" * 64] and len(BASE["history"]) == 1


def test_changes_in_json_and_shell_forms():
    cfg = apply_changes(BASE["config"], ('CMD ["cat", "/greeting"]', "ENTRYPOINT echo hi",
                                         "ENV A=2 B=\"two words\"", "ENV C 3", "LABEL x=y",
                                         "EXPOSE 80 53/udp", "USER nobody", "WORKDIR /w",
                                         "VOLUME /data", "STOPSIGNAL SIGINT"))
    assert cfg["Cmd"] == ["cat", "/greeting"]
    assert cfg["Entrypoint"] == ["/bin/sh", "-c", "echo hi"]
    assert cfg["Env"] == ["PATH=/bin", "A=2", "B=two words", "C=3"]
    assert cfg["Labels"] == {"x": "y"}
    assert cfg["ExposedPorts"] == {"80/tcp": {}, "53/udp": {}}
    assert (cfg["User"], cfg["WorkingDir"], cfg["StopSignal"]) == ("nobody", "/w", "SIGINT")
    assert cfg["Volumes"] == {"/data": {}}


@pytest.mark.parametrize("change", ["RUN make", "CMD", 'CMD ["unclosed"', "CMD [1, 2]", "EXPOSE http",
                                    "ENV =x"])
def test_bad_changes_are_usage_errors(change):
    with pytest.raises(UsageError):
        apply_changes({}, (change,))
