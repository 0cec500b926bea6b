# Copyright (c) dood.gitlab_runner contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Build the collection tarball reproducibly: the same commit gives the same bytes, whoever builds it and when.

`ansible-galaxy collection build` writes the current time into the gzip header, MANIFEST.json and FILES.json,
and every file's own mtime into the tar headers. This script runs it, then rewrites the archive with the
entries in the same order, every mtime set to SOURCE_DATE_EPOCH (default: the time of the last commit), owner
0/0 and a zero gzip timestamp. The content (and so FILES.json's checksums, which ansible-galaxy verifies on
install) is untouched.

    python scripts/build_release.py [--output-path DIR] [COLLECTION_DIR]
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import os
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def source_date_epoch(root):
    if os.environ.get('SOURCE_DATE_EPOCH'):
        return int(os.environ['SOURCE_DATE_EPOCH'])
    try:
        out = subprocess.run(['git', '-C', str(root), 'log', '-1', '--format=%ct'], check=True, capture_output=True, text=True).stdout
        return int(out.strip())
    except (OSError, subprocess.CalledProcessError, ValueError):
        sys.exit('SOURCE_DATE_EPOCH is not set and {0} has no git history to take it from'.format(root))


def normalize(source, target, epoch):
    """Copy the tar entries of source into target with fixed metadata, gzip-compressed without a timestamp."""
    buffer = io.BytesIO()
    with tarfile.open(source, 'r:gz') as src, tarfile.open(fileobj=buffer, mode='w', format=tarfile.GNU_FORMAT) as dst:
        for member in src.getmembers():
            member.mtime = epoch
            member.uid = member.gid = 0
            member.uname = member.gname = ''
            data = src.extractfile(member) if member.isfile() else None
            dst.addfile(member, data)
    with open(target, 'wb') as raw:
        with gzip.GzipFile(filename='', mode='wb', fileobj=raw, mtime=0, compresslevel=9) as out:
            out.write(buffer.getvalue())


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('collection', nargs='?', type=Path, default=ROOT, help='collection root (default: this checkout)')
    parser.add_argument('--output-path', type=Path, default=ROOT / 'build' / 'dist', help='directory of the tarball')
    parser.add_argument('--git-root', type=Path, default=ROOT, help='repository whose last commit dates the build')
    args = parser.parse_args(argv)
    epoch = source_date_epoch(args.git_root)
    args.output_path.mkdir(parents=True, exist_ok=True)
    ansible_galaxy = Path(sys.executable).with_name('ansible-galaxy')
    with tempfile.TemporaryDirectory() as work:
        subprocess.run([str(ansible_galaxy), 'collection', 'build', '--force', '--output-path', work, str(args.collection)],
                       check=True, stdout=subprocess.DEVNULL)
        built = sorted(Path(work).glob('*.tar.gz'))
        if len(built) != 1:
            sys.exit('ansible-galaxy built {0} tarballs, expected one'.format(len(built)))
        target = args.output_path / built[0].name
        normalize(built[0], target, epoch)
    digest = hashlib.sha256(target.read_bytes()).hexdigest()
    print('{0}  {1}'.format(digest, target))
    return 0


if __name__ == '__main__':
    sys.exit(main())
