"""The Vagrantfile: Vagrant accepts it, and it says what the README promises.

Booting the VM needs a box download and a hypervisor, which CI has neither of,
so these tests stop at what Vagrant can check offline: `vagrant validate` on
the checkout (and a broken copy, which must fail), and the settings the file
makes, read by loading it in Ruby with a stand-in for Vagrant's config object.
Vagrant's own state goes to a temp dir (VAGRANT_HOME, VAGRANT_DOTFILE_PATH), so
nothing is written into the repository.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
VAGRANTFILE = REPO / "Vagrantfile"

needs_vagrant = pytest.mark.skipif(
    shutil.which("vagrant") is None,
    reason="vagrant is not installed (scripts/setup.sh installs Debian's package: apt-get install vagrant)")


@pytest.fixture
def vagrant_env(tmp_path) -> dict:
    """Vagrant's home and per-project dir in tmp_path; no update check over the network."""
    env = dict(os.environ, VAGRANT_HOME=str(tmp_path / "vagrant-home"),
               VAGRANT_DOTFILE_PATH=str(tmp_path / "dotfile"), VAGRANT_CHECKPOINT_DISABLE="1",
               VAGRANT_NO_COLOR="1")
    for name in ("VAGRANT_CWD", "VAGRANT_VAGRANTFILE", "VAGRANT_DEFAULT_PROVIDER",
                 "MINIRUN_VM_CPUS", "MINIRUN_VM_MEMORY"):
        env.pop(name, None)
    return env


def validate(directory: Path, env: dict) -> subprocess.CompletedProcess:
    # --ignore-provider: without VirtualBox or libvirt installed, Vagrant would
    # otherwise stop at "No usable default provider could be found".
    return subprocess.run(["vagrant", "validate", "--ignore-provider"], cwd=directory, env=env,
                          capture_output=True, text=True, timeout=120)


def untracked(repo: Path) -> set[str]:
    """Untracked and ignored paths (`git status`), or an empty set outside a git checkout."""
    if not (repo / ".git").exists() or shutil.which("git") is None:
        return set()
    out = subprocess.run(["git", "-c", f"safe.directory={repo}", "status", "--porcelain",
                          "--ignored", "--untracked-files=normal"],
                         cwd=repo, capture_output=True, text=True, check=True).stdout
    return {line[3:] for line in out.splitlines() if line[:2] in ("??", "!!")}


@needs_vagrant
def test_vagrant_validates_the_checkout_and_writes_nothing_into_it(vagrant_env):
    before = untracked(REPO)
    result = validate(REPO, vagrant_env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Vagrantfile validated successfully." in result.stdout
    assert not (REPO / ".vagrant").exists(), "vagrant made .vagrant/ in the checkout"
    # Other work may change the tree meanwhile; nothing new may be Vagrant's.
    made = {path for path in untracked(REPO) - before if "vagrant" in path.lower()}
    assert not made, f"vagrant validate wrote into the checkout: {sorted(made)}"


@needs_vagrant
@pytest.mark.parametrize("old, new, message", [
    ('config.vm.box = "debian/bookworm64"', 'config.vm.bxo = "debian/bookworm64"', "bxo"),
    ('inline: "bash /vagrant/scripts/setup.sh"', 'args: "bash /vagrant/scripts/setup.sh"', "inline"),
    ("Vagrant.configure(\"2\") do |config|", "Vagrant.configure(\"2\") do |config| if", "syntax"),
])
def test_vagrant_validate_rejects_a_broken_copy(tmp_path, vagrant_env, old, new, message):
    """The check above can fail: the same file with one mistake does not validate."""
    text = VAGRANTFILE.read_text()
    assert old in text, f"the Vagrantfile no longer contains {old!r}; update this test"
    copy = tmp_path / "project"
    copy.mkdir()
    (copy / "Vagrantfile").write_text(text.replace(old, new))
    result = validate(copy, vagrant_env)
    assert result.returncode != 0, result.stdout
    assert message in (result.stdout + result.stderr).lower()


# Loads a Vagrantfile with Vagrant.configure yielding a recorder: every setting
# and call is logged as {"call": "config.vm.box=", "args": [...], "kw": {...}},
# and a block (a provider's) is run with a recorder named after its first argument.
RECORDER = r"""
require "json"
LOG = []
class Recorder
  def initialize(path) @path = path end
  def respond_to_missing?(*) true end
  def method_missing(name, *args, **kw, &block)
    LOG << {"call" => (@path + [name.to_s]).join("."), "args" => args, "kw" => kw}
    child = Recorder.new(@path + [name.to_s] + (block ? [args.first.to_s] : []))
    block.call(child, child) if block
    child
  end
end
module Vagrant
  def self.configure(version)
    raise "config version #{version}" unless version == "2"
    yield Recorder.new(["config"])
  end
end
load ARGV[0]
puts JSON.generate(LOG)
"""


def settings(tmp_path: Path, **env: str) -> list[dict]:
    if shutil.which("ruby") is None:
        pytest.skip("ruby is not installed (Debian's vagrant package depends on it)")
    script = tmp_path / "recorder.rb"
    script.write_text(RECORDER)
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MINIRUN_VM_")}
    result = subprocess.run(["ruby", str(script), str(VAGRANTFILE)], env=dict(clean, **env),
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def calls(log: list[dict], name: str) -> list[dict]:
    return [entry for entry in log if entry["call"] == name]


def only_value(log: list[dict], name: str):
    found = calls(log, name)
    assert len(found) == 1, f"{name} set {len(found)} times"
    return found[0]["args"][0]


def test_the_vm_is_debian_12_provisioned_by_the_readme_set_up(tmp_path):
    log = settings(tmp_path)
    assert only_value(log, "config.vm.box=") == "debian/bookworm64"
    provisions = calls(log, "config.vm.provision")
    assert [p["args"] for p in provisions] == [["shell"]]
    assert provisions[0]["kw"].get("inline") == "bash /vagrant/scripts/setup.sh"
    folders = calls(log, "config.vm.synced_folder")
    assert [f["args"] for f in folders] == [[".", "/vagrant"]]
    assert folders[0]["kw"]["type"] == "rsync"
    excluded = folders[0]["kw"]["rsync__exclude"]
    assert ".venv/" in excluded and "fixtures-out/" in excluded
    assert (REPO / "scripts" / "setup.sh").is_file()


@pytest.mark.parametrize("provider", ["virtualbox", "libvirt"])
def test_cpus_and_memory_default_and_follow_the_environment(tmp_path, provider):
    prefix = f"config.vm.provider.{provider}."
    log = settings(tmp_path)
    assert only_value(log, prefix + "cpus=") == 4
    assert only_value(log, prefix + "memory=") == 6144
    log = settings(tmp_path, MINIRUN_VM_CPUS="2", MINIRUN_VM_MEMORY="3072")
    assert only_value(log, prefix + "cpus=") == 2
    assert only_value(log, prefix + "memory=") == 3072


def test_the_make_target_runs_the_readme_test_command():
    makefile = (REPO / "Makefile").read_text()
    lines = makefile.split("\ntest:", 1)[1].splitlines()[1:]
    recipe = [line.strip() for line in lines[:next((i for i, l in enumerate(lines) if not l.startswith("\t")), len(lines))]]
    assert recipe == ["bash scripts/setup.sh test"]
    assert "vagrant up && vagrant ssh -c 'sudo make -C /vagrant test'" in (REPO / "README.md").read_text()
