# Everything goes through scripts/setup.sh, so `make` and the README's commands do the same.
.PHONY: setup demo test unit fixtures vagrant-test
setup:
	bash scripts/setup.sh
demo:
	bash scripts/setup.sh demo
test:
	bash scripts/setup.sh test
unit:
	.venv/bin/python -m pytest -q tests/unit
fixtures:
	.venv/bin/python rootfs-fixtures/build.py fixtures-out
# On the host, not as root: a Debian 12 VM (see Vagrantfile), provisioned, then the suite in it.
vagrant-test:
	vagrant up && vagrant ssh -c 'sudo make -C /vagrant test'
