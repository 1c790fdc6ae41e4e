"""Pinned npm packages for the tests that run Node (the BlurHash vectors, Converse.js):
`npm ci` of a test's lockfile into its own directory under build/, skipped when the lockfile
installed there is already the test's."""

import os
import shutil
import subprocess


def install(js_dir, node_dir, package):
    """Installs js_dir's package.json + package-lock.json into node_dir unless `package` is
    installed there from the same lockfile; returns node_dir's node_modules."""
    lock = os.path.join(js_dir, "package-lock.json")
    installed = os.path.join(node_dir, "package-lock.json")
    modules = os.path.join(node_dir, "node_modules")
    if (os.path.isdir(os.path.join(modules, package)) and os.path.exists(installed)
            and open(installed, "rb").read() == open(lock, "rb").read()):
        return modules
    if not shutil.which("npm"):
        raise AssertionError("npm is not installed (make deps installs it)")
    shutil.rmtree(node_dir, ignore_errors=True)
    os.makedirs(node_dir)
    for f in ("package.json", "package-lock.json"):
        shutil.copy(os.path.join(js_dir, f), node_dir)
    p = subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--prefix", node_dir],
                       capture_output=True, text=True, timeout=300, cwd=node_dir)
    if p.returncode != 0:
        shutil.rmtree(node_dir, ignore_errors=True)
        raise AssertionError(f"npm ci in {node_dir} failed: {p.stdout[-2000:]} {p.stderr[-3000:]}")
    return modules
