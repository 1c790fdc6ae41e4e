#!/usr/bin/python3
"""BlurHash vectors against an independent implementation: the npm `blurhash` package (the
reference TypeScript encoder, pinned in test/js/blurhash/package.json and package-lock.json,
installed by this test into build/blurhash with npm ci) encodes the very pixels our C encoder
(c_src/media/blurhash.c) hashed, and the two hashes must be equal.

The pixels come from `test_media --blurhash-vectors` of the variant under test
(build/<variant>/test/test_media): for every fixture in test/fixtures/media, the downscaled
pixels hu_media_probe hashes (with 4x3, 9x9 and 1x1 components), then synthetic noise,
gradients and flat colours at odd sizes with 1..9 components. test/js/blurhash/vectors.js
prints one line per vector."""

import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "lib"))
import npm_packages  # noqa: E402
from harness import ROOT, VARIANT, main, test  # noqa: E402

JS_DIR = os.path.join(ROOT, "test", "js", "blurhash")
NODE_DIR = os.path.join(ROOT, "build", "blurhash")
TEST_MEDIA = os.path.join(ROOT, "build", VARIANT, "test", "test_media")


def blurhash_package():
    return npm_packages.install(JS_DIR, NODE_DIR, "blurhash")


def compare(vectors):
    """Runs vectors.js on the vector lines; returns (exit code, its output lines)."""
    p = subprocess.run(["node", os.path.join(JS_DIR, "vectors.js")], input=vectors,
                       capture_output=True, text=True, timeout=300,
                       env=dict(os.environ, NODE_PATH=blurhash_package()))
    return p.returncode, p.stdout.splitlines() + p.stderr.splitlines()


def c_vectors():
    if not os.path.exists(TEST_MEDIA):
        raise AssertionError(f"{TEST_MEDIA} is missing (make -C c_src unit, or SAN=1)")
    p = subprocess.run([TEST_MEDIA, "--blurhash-vectors"], capture_output=True, text=True,
                       timeout=300)
    if p.returncode != 0:
        raise AssertionError(f"test_media --blurhash-vectors failed: {p.stderr[-3000:]}")
    return p.stdout


@test
def c_encoder_matches_npm_blurhash():
    vectors = c_vectors()
    n = len(vectors.splitlines())
    if n < 100:
        raise AssertionError(f"only {n} vectors")
    code, out = compare(vectors)
    bad = [l for l in out if not l.startswith("ok - ")]
    if code != 0 or bad:
        raise AssertionError(f"{len(bad)} of {n} vectors differ:\n" + "\n".join(bad[:20]))


@test
def a_different_hash_is_caught():
    """The comparison itself: one digit of one C hash changed must fail it."""
    first = c_vectors().splitlines()[0].split(" ")
    first[5] = first[5][:-1] + ("0" if first[5][-1] != "0" else "1")
    code, out = compare(" ".join(first) + "\n")
    if code == 0 or not any(l.startswith("not ok - ") for l in out):
        raise AssertionError(f"a wrong hash passed: {out}")


if __name__ == "__main__":
    main()
