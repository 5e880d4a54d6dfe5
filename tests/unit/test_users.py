"""USER[:GROUP] resolution against a container's own /etc/passwd and /etc/group."""

from __future__ import annotations

import pytest

from minirun.errors import UsageError
from minirun.sandbox.users import Identity, resolve

PASSWD = """\
# comment line
root:x:0:0:root:/root:/bin/sh
alice:x:1000:1000:Alice:/home/alice:/bin/sh

bob:x:1001:1001::/home/bob:/bin/sh
nohome:x:1002:1002:::/bin/sh
short:x:1003
"""

GROUP = """\
root:x:0:
alice:x:1000:
bob:x:1001:
wheel:x:10:alice,bob
audio:x:29:alice
staff:x:50:
alicegroup:x:60:alicex
"""


@pytest.fixture
def files(tmp_path):
    passwd, group = tmp_path / "passwd", tmp_path / "group"
    passwd.write_text(PASSWD)
    group.write_text(GROUP)

    def res(spec: str) -> Identity:
        return resolve(spec, str(passwd), str(group))
    return res


def test_name_with_supplementary_groups(files):
    assert files("alice") == Identity(1000, 1000, (1000, 10, 29), "/home/alice")


def test_other_name(files):
    assert files("bob") == Identity(1001, 1001, (1001, 10), "/home/bob")


def test_root(files):
    assert files("root") == Identity(0, 0, (0,), "/root")


def test_numeric_uid_in_passwd_uses_its_entry(files):
    assert files("1000") == Identity(1000, 1000, (1000, 10, 29), "/home/alice")


def test_numeric_uid_not_in_passwd(files):
    assert files("4242") == Identity(4242, 0, (0,), "/")


def test_user_and_group_names(files):
    # an explicit group replaces the primary gid and drops supplementary groups, as docker does
    assert files("alice:staff") == Identity(1000, 50, (50,), "/home/alice")


def test_user_and_numeric_gid(files):
    assert files("alice:77") == Identity(1000, 77, (77,), "/home/alice")
    assert files("4242:4343") == Identity(4242, 4343, (4343,), "/")


def test_numeric_uid_with_group_name(files):
    assert files("1001:wheel") == Identity(1001, 10, (10,), "/home/bob")


def test_empty_home_is_root_dir(files):
    assert files("nohome").home == "/"


def test_unknown_user_is_a_usage_error(files):
    with pytest.raises(UsageError, match="ghost"):
        files("ghost")


def test_unknown_group_is_a_usage_error(files):
    with pytest.raises(UsageError, match="nogroup"):
        files("alice:nogroup")


def test_short_passwd_lines_are_ignored(files):
    with pytest.raises(UsageError):
        files("short")


def test_membership_is_by_exact_name(files):
    # alicegroup lists "alicex", not "alice"
    assert 60 not in files("alice").groups


def test_missing_files(tmp_path):
    missing = str(tmp_path / "nope")
    assert resolve("0", missing, missing) == Identity(0, 0, (0,), "/")
    assert resolve("5:6", missing, missing) == Identity(5, 6, (6,), "/")
    with pytest.raises(UsageError):
        resolve("root", missing, missing)


def test_malformed_uid_field_is_a_usage_error(tmp_path):
    (tmp_path / "passwd").write_text("bad:x:abc:1::/home/bad:/bin/sh\n")
    (tmp_path / "group").write_text("")
    with pytest.raises(UsageError):
        resolve("bad", str(tmp_path / "passwd"), str(tmp_path / "group"))


# ---------------------------------------------------------------- bounded reads (issue 14, item 8)

def test_a_fifo_passwd_is_refused_without_waiting(tmp_path):
    import os
    from minirun.errors import BadImage
    fifo = tmp_path / "passwd"
    os.mkfifo(fifo)
    with pytest.raises(BadImage, match="passwd is a FIFO, not a regular file"):
        resolve("root", str(fifo), str(tmp_path / "none"))


def test_a_passwd_linked_to_dev_zero_is_refused(tmp_path):
    from minirun.errors import BadImage
    (tmp_path / "passwd").symlink_to("/dev/zero")
    with pytest.raises(BadImage, match="is a character device"):
        resolve("0", str(tmp_path / "passwd"), str(tmp_path / "none"))


def test_a_group_over_the_cap_is_refused_by_its_size(tmp_path):
    from minirun.errors import BadImage
    from minirun.sandbox.users import MAX_TABLE_BYTES
    group = tmp_path / "group"
    with open(group, "wb") as f:
        f.truncate(MAX_TABLE_BYTES + 1)
    with pytest.raises(BadImage, match=f"is {MAX_TABLE_BYTES + 1} bytes"):
        resolve("0", str(tmp_path / "none"), str(group))


def test_missing_files_are_empty_tables(tmp_path):
    assert resolve("1000:1000", str(tmp_path / "no-passwd"), str(tmp_path / "no-group")) == \
        Identity(1000, 1000, (1000,), "/")


def test_a_table_that_is_a_link_to_one_of_our_descriptors_reads_as_missing(tmp_path):
    """/proc/self/fd/N in an image's /etc/passwd would reopen what we hold: the file
    our stdin came from, say. The kernel refuses that link (RESOLVE_NO_MAGICLINKS)."""
    import os
    held = tmp_path / "held"
    held.write_text("root:x:0:0:root:/SECRET:/bin/sh\nsecret:x:4242:root\n")
    fd = os.open(held, os.O_RDONLY)
    try:
        for name in ("passwd", "group"):
            (tmp_path / name).symlink_to(f"/proc/self/fd/{fd}")
        assert resolve("0", str(tmp_path / "passwd"), str(tmp_path / "group")) == \
            Identity(0, 0, (0,), "/")
        # the same file named directly is read: only the link is refused
        assert resolve("0", str(held), str(held)) == Identity(0, 0, (0, 4242), "/SECRET")
    finally:
        os.close(fd)


def test_tables_are_resolved_inside_the_given_root(tmp_path):
    """api/bundle.py looks the user up in a rootfs on the host: an absolute link in it
    stays inside it."""
    import os
    (tmp_path / "etc").mkdir()
    (tmp_path / "real").write_text("app:x:700:701::/srv/app:/bin/sh\n")
    (tmp_path / "etc" / "passwd").symlink_to("/real")
    root = os.open(tmp_path, os.O_PATH | os.O_DIRECTORY)
    try:
        assert resolve("app", root=root) == Identity(700, 701, (701,), "/srv/app")
    finally:
        os.close(root)
