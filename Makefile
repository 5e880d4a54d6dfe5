# Everything goes through scripts/setup.sh, so `make` and the README's commands do the same.
.PHONY: setup demo test unit fixtures vagrant-test vm-image vm-test
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
# As root: the Debian 12 qemu VM (scripts/vm.sh; README "In a Debian 12 VM (qemu)").
# vm-test runs what CI runs there; `make vm-test VM_TEST_ARGS=tests` runs the whole suite.
VM_TEST_ARGS ?= -m kernel tests/integration
vm-image:
	bash scripts/vm.sh build
vm-test: vm-image
	bash scripts/vm.sh test $(VM_TEST_ARGS)
