# Everything goes through scripts/setup.sh, so `make` and the README's commands do the same.
.PHONY: setup demo test unit fixtures
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
