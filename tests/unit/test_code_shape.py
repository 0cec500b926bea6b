# Copyright (c) dood.gitlab_runner contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The code keeps the shape CONTRIBUTING describes: module files hold their documentation and a short main(), the
logic lives in small private module_utils, and no class of the collection or of the fake GitLab grows past 300 lines.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MAX_CLASS_LINES = 300
MAX_MAIN_STATEMENTS = 2
DOC_NAMES = {'DOCUMENTATION', 'EXAMPLES', 'RETURN', '__metaclass__'}
SOURCES = sorted(
    path for folder in ('plugins', 'tools', 'scripts')
    for path in (ROOT / folder).rglob('*.py')
    if '__pycache__' not in path.parts
)
MODULES = sorted((ROOT / 'plugins' / 'modules').glob('*.py'))


def classes(path):
    tree = ast.parse(path.read_text(encoding='utf-8'))
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef):
            yield node.name, node.end_lineno - node.lineno + 1


def test_sources_found():
    assert len(SOURCES) > 20
    assert {path.name for path in MODULES} >= {'runner_config.py', 'runner_info.py', 'runner_config_host.py'}


@pytest.mark.parametrize('path', SOURCES, ids=lambda path: str(path.relative_to(ROOT)))
def test_no_class_over_300_lines(path):
    too_long = ['%s (%d lines)' % (name, length) for name, length in classes(path) if length > MAX_CLASS_LINES]
    assert not too_long, 'split by concern: %s' % ', '.join(too_long)


def top_level_kinds(tree):
    """What a module file's top level holds, as (kind, detail) pairs."""
    for node in tree.body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield 'import', None
        elif isinstance(node, ast.Assign) and all(isinstance(target, ast.Name) for target in node.targets):
            yield 'assign', {target.id for target in node.targets}
        elif isinstance(node, ast.FunctionDef):
            yield 'def', node
        elif isinstance(node, ast.If):
            yield 'if', ast.unparse(node.test)
        elif isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
            yield 'docstring', None
        else:
            yield 'other', ast.dump(node)[:80]


@pytest.mark.parametrize('path', MODULES, ids=lambda path: path.name)
def test_module_file_is_docs_and_a_short_main(path):
    tree = ast.parse(path.read_text(encoding='utf-8'))
    functions = []
    for kind, detail in top_level_kinds(tree):
        if kind == 'assign':
            assert detail <= DOC_NAMES, 'only documentation strings at top level, not %s' % sorted(detail)
        elif kind == 'def':
            functions.append(detail)
        elif kind == 'if':
            assert detail == "__name__ == '__main__'"
        else:
            assert kind in ('import', 'docstring'), 'unexpected top-level statement: %s' % detail
    assert [function.name for function in functions] == ['main']
    assert len(functions[0].body) <= MAX_MAIN_STATEMENTS
