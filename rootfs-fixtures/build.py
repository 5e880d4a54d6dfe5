#!/usr/bin/env python3
"""Build minirun's test images from the readable sources beside this file.

    python3 rootfs-fixtures/build.py OUTDIR [--busybox PATH] [--image NAME ...]

Writes, for every image spec images/<image>.json:
    OUTDIR/oci/<image>/                 OCI image layout (ref.name = tag)
    OUTDIR/oci-archive/<image>.tar      same layout as a tar (ref.name = full ref)
    OUTDIR/docker-archive/<image>.tar   `docker save` style archive
and for every bundle bundles/<bundle>.json whose images are all being built:
    OUTDIR/oci-archive/<bundle>.tar and OUTDIR/docker-archive/<bundle>.tar
Output is byte-for-byte reproducible on a given host. Stdlib only.
"""

from __future__ import annotations

import argparse
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from fixturelib.entries import FixtureError  # noqa: E402
from fixturelib.image import BuiltImage, LayerFactory, build_image  # noqa: E402
from fixturelib.output import write_all_forms  # noqa: E402
from fixturelib.spec import load_bundle, load_image, spec_names  # noqa: E402

IMAGES_DIR = os.path.join(HERE, "images")
BUNDLES_DIR = os.path.join(HERE, "bundles")
LAYERS_DIR = os.path.join(HERE, "layers")


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("outdir", help="where oci/, oci-archive/ and docker-archive/ go")
    parser.add_argument("--busybox", help="busybox binary for the 'busybox' layer "
                        "(default: busybox on PATH)")
    parser.add_argument("--image", action="append", metavar="NAME",
                        help="build only this image (repeatable); default: all")
    return parser.parse_args(argv)


def select_images(wanted: list[str] | None) -> list[str]:
    available = spec_names(IMAGES_DIR)
    if not wanted:
        return available
    unknown = sorted(set(wanted) - set(available))
    if unknown:
        raise FixtureError(f"unknown image(s) {unknown}; available: {', '.join(available)}")
    return sorted(set(wanted))


def select_bundles(images: list[str]) -> dict[str, list[str]]:
    """Bundles whose members are all selected; a bundle may not shadow an image's outputs."""
    bundles = {}
    for name in spec_names(BUNDLES_DIR):
        if name in spec_names(IMAGES_DIR):
            raise FixtureError(f"bundle {name!r} has the same name as an image")
        members = load_bundle(os.path.join(BUNDLES_DIR, f"{name}.json"))
        if set(members) <= set(images):
            bundles[name] = members
    return bundles


def build(outdir: str, busybox: str | None, wanted: list[str] | None) -> list[str]:
    names = select_images(wanted)
    bundles = select_bundles(names)
    factory = LayerFactory(LAYERS_DIR, busybox)
    built: dict[str, BuiltImage] = {}
    written: list[str] = []
    for name in names:
        built[name] = build_image(load_image(os.path.join(IMAGES_DIR, f"{name}.json")), factory)
        written += write_all_forms(outdir, name, [built[name]], layout_dir=True)
    for name, members in bundles.items():
        written += write_all_forms(outdir, name, [built[m] for m in members], layout_dir=False)
    return written


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    try:
        for path in build(args.outdir, args.busybox, args.image):
            print(f"wrote {path}")
    except FixtureError as exc:
        print(f"build.py: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
