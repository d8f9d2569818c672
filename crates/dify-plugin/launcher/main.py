"""Launcher for a plugin built on the dify-plugin runtime.

The Dify plugin daemon only runs Python plugins (`.venv/bin/python -m main`), so this module
replaces the Python process with the native binary for this machine: same PID, same pipes,
same parent. The daemon extracts every file without its executable bit, hence the chmod.
"""

import os
import platform
import stat
import sys

ARCHITECTURES = {
    "x86_64": "x86_64",
    "amd64": "x86_64",
    "aarch64": "aarch64",
    "arm64": "aarch64",
}


def fail(message):
    sys.stderr.write("plugin launcher: " + message + "\n")
    sys.stderr.flush()
    sys.exit(1)


def main():
    machine = platform.machine()
    arch = ARCHITECTURES.get(machine.lower())
    if arch is None:
        fail("unsupported architecture %r; this package has binaries for x86_64 and aarch64" % machine)
    here = os.path.dirname(os.path.abspath(__file__))
    bin_dir = os.path.join(here, "bin")
    suffix = "-" + arch
    try:
        names = sorted(n for n in os.listdir(bin_dir) if n.endswith(suffix))
    except OSError:
        names = []
    if not names:
        fail("the %s binary is missing from %s; rebuild the package with its `package` command"
             % (arch, bin_dir))
    if len(names) > 1:
        fail("%s holds several %s binaries (%s); rebuild the package" % (bin_dir, arch, ", ".join(names)))
    binary = os.path.join(bin_dir, names[0])
    if not os.access(binary, os.X_OK):
        try:
            mode = os.stat(binary).st_mode
            os.chmod(binary, mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
        except OSError as error:
            fail("cannot make %s executable: %s" % (binary, error))
    try:
        os.execv(binary, [binary] + sys.argv[1:])
    except OSError as error:
        fail(
            "cannot start %s: %s (is the plugin directory on a noexec mount? "
            "PLUGIN_WORKING_PATH must allow executing files)" % (binary, error)
        )


if __name__ == "__main__":
    main()
