#!/usr/bin/env python
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Offline-friendly stand-in for the pip bootstrap script that ansible-test downloads.

ansible-test (``_util/target/setup/requirements.py``, ``bootstrap()``) fetches
``get-pip-<version>.py`` from a CI file host unless ``~/.ansible/test/cache/get_pip_<version>.py``
already exists, then runs it inside a fresh virtual environment that has no pip, with pip's
install arguments, for example ``--disable-pip-version-check pip==24.2 --no-setuptools --no-wheel``.

This script behaves like get-pip.py for that call: it finds a pip wheel to run from (the one bundled
with the interpreter's ``ensurepip`` or, failing that, the requested release from PyPI), unpacks it into a
temporary directory and runs ``pip install --upgrade --force-reinstall <arguments>``, so the packages
themselves come from the package index pip is configured to use.
"""
from __future__ import annotations

import glob
import json
import os
import shutil
import sys
import tempfile
import urllib.request
import zipfile

# Options understood by get-pip.py itself rather than by ``pip install``.
GET_PIP_OPTIONS = ('--no-setuptools', '--no-wheel')
PYPI_JSON = 'https://pypi.org/pypi/pip/{version}/json'


def requested_pip_version(arguments):
    """Return the pip version pinned in the arguments (``pip==X``), or None."""
    for argument in arguments:
        if argument.startswith('pip=='):
            return argument.split('==', 1)[1]
    return None


def bundled_wheel():
    """Return the path of the pip wheel shipped with ensurepip, or None when the interpreter lacks it."""
    try:
        import ensurepip  # pylint: disable=import-outside-toplevel
    except ImportError:
        return None
    wheels = sorted(glob.glob(os.path.join(os.path.dirname(ensurepip.__file__), '_bundled', 'pip-*.whl')))
    return wheels[-1] if wheels else None


def downloaded_wheel(version, directory):
    """Download the pip wheel of the given release (or the latest one) from PyPI into directory."""
    url = PYPI_JSON.format(version=version) if version else 'https://pypi.org/pypi/pip/json'
    with urllib.request.urlopen(url, timeout=120) as response:  # nosec B310 - fixed https URL
        release = json.load(response)
    for item in release['urls']:
        if item['packagetype'] == 'bdist_wheel':
            path = os.path.join(directory, item['filename'])
            with urllib.request.urlopen(item['url'], timeout=300) as response, open(path, 'wb') as wheel:  # nosec B310
                shutil.copyfileobj(response, wheel)
            return path
    raise SystemExit('PyPI lists no wheel for pip %s' % (version or '(latest)'))


def main():
    """Install pip (and whatever else was asked for) into the running interpreter's environment."""
    arguments = [argument for argument in sys.argv[1:] if argument not in GET_PIP_OPTIONS]
    workdir = tempfile.mkdtemp(prefix='pip-bootstrap-')
    try:
        wheel = bundled_wheel() or downloaded_wheel(requested_pip_version(arguments), workdir)
        unpacked = os.path.join(workdir, 'pip')
        with zipfile.ZipFile(wheel) as archive:
            archive.extractall(unpacked)
        sys.path.insert(0, unpacked)
        from pip._internal.cli.main import main as pip_main  # pylint: disable=import-outside-toplevel,import-error
        return pip_main(['install', '--upgrade', '--force-reinstall'] + arguments)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == '__main__':
    sys.exit(main())
